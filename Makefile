# aios - build, run and test. Plain make; system libraries through pkg-config; llama.cpp
# from the pinned release built by scripts/fetch-llama.sh into $(AIOS_CACHE).
#   make run    everything (deps, llama.cpp, model, build), then the kernel with demo agents
#   make test   every test tier (unit, system, fault; system again under ASan+UBSan)
#   make llama GPU=cuda && make GPU=cuda
#               llama.cpp with its CUDA backend (a separate build, llama-<ver>-cuda in the
#               cache) and the kernel against it in build-cuda/ (models take gpu_layers)

AIOS_CACHE ?= $(HOME)/.cache/aios
export AIOS_CACHE
LLAMA_VER  := $(shell sed -n 's/^LLAMA_PY_VERSION=//p' scripts/deps.env)
GPU        ?=
LLAMA_DIR  ?= $(AIOS_CACHE)/llama-$(LLAMA_VER)$(if $(GPU),-$(GPU))
LLAMA_INC  := -I$(LLAMA_DIR)/src/include -I$(LLAMA_DIR)/src/ggml/include
LLAMA_LIB  := $(LLAMA_DIR)/build/bin
BUILD      ?= build$(if $(GPU),-$(GPU))
SAN        ?=

PKGS    := libmicrohttpd libcjson yaml-0.1 libcurl sqlite3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC      ?= cc
OPT     ?= -O2 -g
ALL_CFLAGS = $(OPT) -std=c17 -D_GNU_SOURCE -Wall -Wextra -Werror -Iinclude -Isrc $(PKG_CFLAGS) $(SAN) $(CFLAGS)
ALL_LDFLAGS = $(SAN) $(LDFLAGS)
# ggml's CPU backend is not linked: libggml loads the best libggml-cpu-<variant>.so for the
# host at run time from LLAMA_LIB (src/llm/backend.c, scripts/fetch-llama.sh).
# RUNTIME_LIB: where the binaries find llama.cpp's libraries and ggml's backends when they
# run (the cache's build; `make install` relinks against its copy under PREFIX)
RUNTIME_LIB ?= $(LLAMA_LIB)
LLAMA_LDLIBS := -L$(LLAMA_LIB) -lllama -lllama-common -lggml -lggml-base -ldl -Wl,-rpath,$(RUNTIME_LIB)
LDLIBS  += $(PKG_LIBS) -lpthread -lm
KERNEL_LDLIBS := -lstdc++ -lseccomp -lcrypto
CXX     ?= g++
# Two C++ shims give C interfaces over C++ libraries: src/vector/vector.cpp over hnswlib
# (header-only) and src/llm/chat_template.cpp over llama.cpp's common chat library
# (libllama-common: Jinja templates, tool-call grammars and parsers). Under ASan,
# hnswlib's hand-vectorised paths are off: their prefetch in searchBaseLayer reads the
# neighbour id one past a link list (hnswalg.h:214 in 0.6.2; only a prefetch address, but
# ASan aborts on it), and the plain paths let ASan check all of hnswlib's own accesses.
HNSW_ASAN := $(if $(findstring address,$(SAN)),-DNO_MANUAL_VECTORIZATION)
ALL_CXXFLAGS = $(OPT) -std=c++17 -Wall -Wextra -Iinclude -Isrc $(SAN) $(HNSW_ASAN) $(CXXFLAGS)

KERNEL_SRC := src/kernel/boot.c src/kernel/util.c src/kernel/torture.c src/kernel/config.c src/kernel/result.c src/kernel/maps.c src/syscall/syscall.c \
              src/sched/sched.c src/sched/policy_fifo.c src/sched/policy_rr.c src/sched/policy_priority.c \
              src/sched/policy_fair.c src/sched/policy_agent.c src/sched/runq.c src/context/ctx.c \
              src/llm/llm.c src/llm/backend.c src/llm/llamacpp.c src/llm/llamacpp_ctx.c src/llm/text.c src/llm/grammar.c src/llm/embed.c src/llm/remote.c src/llm/remote_anthropic.c src/llm/remote_fleet.c \
              src/memory/memory.c src/storage/db.c src/storage/path.c src/storage/storage.c \
              src/tools/schema.c src/tools/calc.c src/tools/manifest.c src/tools/sandbox.c src/tools/mcp.c \
              src/tools/builtin.c src/tools/tools.c src/agents/agents.c src/agents/supervisor.c src/agents/proc.c src/agents/cgroup.c src/access/access.c src/access/audit.c src/access/budget.c \
              src/api/server.c src/api/admit.c src/api/json.c src/api/chat.c src/api/routes_aios.c src/api/routes_openai.c src/api/routes_mem.c src/api/routes_tools.c \
              src/api/routes_responses.c src/api/routes_anthropic.c src/api/routes_ollama.c src/api/routes_models.c src/api/routes_compat.c src/api/routes_agents.c src/api/routes_ui.c
SDK_SRC    := src/sdk/aios.c src/kernel/result.c
KERNEL_CXX := src/vector/vector.cpp src/llm/chat_template.cpp
KERNEL_OBJ := $(KERNEL_SRC:%.c=$(BUILD)/obj/%.o) $(KERNEL_CXX:%.cpp=$(BUILD)/obj/%.o) $(BUILD)/obj/gen/ui_assets.o
SDK_OBJ    := $(SDK_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))

.PHONY: all deps llama model run test unit unit-bins system asan tsan torture bench clean docs install fuzz fuzz-bins fuzz-build format format-check
all: $(BUILD)/aiosd $(BUILD)/aios $(BUILD)/demo_agents $(BUILD)/loadgen $(BUILD)/agents $(BUILD)/memory $(BUILD)/tools $(BUILD)/doors $(BUILD)/failover $(BUILD)/agents_spawn $(BUILD)/soak $(BUILD)/prefill $(BUILD)/kvview

deps:
	@bash scripts/install-deps.sh
llama:
	@AIOS_GPU=$(GPU) bash scripts/fetch-llama.sh
model: llama
	@bash scripts/fetch-model.sh
	@bash scripts/fetch-embed-model.sh

# Header dependencies are the compiler's (-MMD -MP: one .d beside each object); the Makefile
# itself is one too, as it holds the flags.
$(BUILD)/obj/%.o: %.c Makefile | llama-check
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP $(LLAMA_INC) -c $< -o $@
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

$(BUILD)/obj/src/llm/backend.o: ALL_CFLAGS += -DAIOS_GGML_BACKEND_DIR='"$(RUNTIME_LIB)"' -DAIOS_LLAMA_PY_VERSION='"$(LLAMA_VER)"'
$(BUILD)/obj/bench/kvview.o: ALL_CFLAGS += -DAIOS_GGML_BACKEND_DIR='"$(RUNTIME_LIB)"'
GIT_REV := $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
$(BUILD)/obj/src/kernel/boot.o $(BUILD)/obj/src/cli/aios.o: ALL_CFLAGS += -DAIOS_GIT_REV='"$(GIT_REV)"'
# The values baked in above (and the rpath) live in a stamp rewritten only when they change,
# so that a new commit or another install PREFIX rebuilds what carries them.
BUILD_ID := $(RUNTIME_LIB) $(GIT_REV)
$(BUILD)/build-id: FORCE
	@mkdir -p $(dir $@); echo '$(BUILD_ID)' | cmp -s - $@ || echo '$(BUILD_ID)' >$@
$(BUILD)/obj/src/llm/backend.o $(BUILD)/obj/src/kernel/boot.o $(BUILD)/obj/src/cli/aios.o $(BUILD)/aiosd: $(BUILD)/build-id
.PHONY: FORCE
$(BUILD)/obj/tests/unit/test_llm.o: ALL_CFLAGS += -DAIOS_LLAMA_TEMPLATES='"$(LLAMA_DIR)/src/models/templates"'

$(BUILD)/obj/%.o: %.cpp Makefile | llama-check
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -MMD -MP -c $< -o $@

# UBSan's nonnull-attribute check is off for the hnswlib shim only: updatePoint (a re-added
# label: an updated memory block) copies a node's empty link list with memcpy(NULL, p, 0)
# (hnswalg.h:991 in 0.6.2), harmless, but UBSan would halt the kernel on it.
$(BUILD)/obj/src/vector/vector.o: ALL_CXXFLAGS += $(if $(findstring undefined,$(SAN)),-fno-sanitize=nonnull-attribute)
$(BUILD)/obj/src/llm/chat_template.o: ALL_CXXFLAGS += -Werror -isystem $(LLAMA_DIR)/src/include -isystem $(LLAMA_DIR)/src/ggml/include \
                                        -isystem $(LLAMA_DIR)/src/common -isystem $(LLAMA_DIR)/src/vendor

# The dashboard (ui/index.html) as a C array in the binary: no files to install or find.
$(BUILD)/gen/ui_assets.c: ui/index.html
	@mkdir -p $(dir $@)
	@{ echo '/* generated from ui/index.html by the Makefile: the dashboard (src/api/routes_ui.c) */'; \
	  echo 'const unsigned char aios_ui_index_html[] = {'; od -An -v -tx1 $< | sed 's/ \([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00};'; echo "const unsigned int aios_ui_index_html_len = $$(wc -c < $<);"; } > $@
$(BUILD)/obj/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c
	@mkdir -p $(dir $@)
	$(CC) $(OPT) -std=c17 -c $< -o $@

.PHONY: llama-check
llama-check:
	@test -f $(LLAMA_LIB)/libllama.so || { echo "llama.cpp is not built yet: run 'make llama' (or 'make run')"; exit 1; }

$(BUILD)/aiosd: $(BUILD)/obj/src/kernel/main.o $(KERNEL_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(LLAMA_LDLIBS) $(LDLIBS) $(KERNEL_LDLIBS)
$(BUILD)/aios: $(BUILD)/obj/src/cli/aios.o $(BUILD)/obj/src/cli/cli_agents.o $(BUILD)/obj/src/cli/top.o $(SDK_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS) -lncursesw
$(BUILD)/demo_agents: $(BUILD)/obj/examples/demo_agents.o $(SDK_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/loadgen: $(BUILD)/obj/bench/loadgen.o $(SDK_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/kvview: $(BUILD)/obj/bench/kvview.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LLAMA_LDLIBS) $(LDLIBS) -lstdc++
$(BUILD)/prefill: $(BUILD)/obj/bench/prefill.o $(SDK_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/agents: $(BUILD)/obj/bench/agents.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/memory: $(BUILD)/obj/bench/memory.o $(BUILD)/obj/bench/http.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/tools: $(BUILD)/obj/bench/tools.o $(BUILD)/obj/bench/http.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/doors: $(BUILD)/obj/bench/doors.o $(BUILD)/obj/bench/http.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/failover: $(BUILD)/obj/bench/failover.o $(BUILD)/obj/bench/http.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/agents_spawn: $(BUILD)/obj/bench/agents_spawn.o $(BUILD)/obj/bench/http.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/soak: $(BUILD)/obj/bench/soak.o $(BUILD)/obj/bench/http.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(KERNEL_OBJ) $(BUILD)/obj/src/sdk/aios.o
	@mkdir -p $(dir $@)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LLAMA_LDLIBS) $(LDLIBS) $(KERNEL_LDLIBS) -lcmocka

# The fuzzing tier (tests/fuzz, docs/testing.md): one libFuzzer harness per parser of outside
# bytes. The kernel's objects are built again with clang, ASan+UBSan and libFuzzer's coverage
# in build-fuzz/ (the same rules as every build), and each harness links all of them, so a
# harness can drive anything from one parser to a whole kernel in its own process (linked by
# clang++, for UBSan's C++ runtime that the two shims need). `make
# fuzz` runs each for FUZZ_S seconds over its committed seed corpus (tests/fuzz/corpus/<name>)
# and prints a table.
FUZZ_S    ?= 30
FUZZ_CC   ?= clang
FUZZ_CXX  ?= clang++
FUZZ_SAN  := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_BINS := $(patsubst tests/fuzz/fuzz_%.c,build-fuzz/fuzz_%,$(wildcard tests/fuzz/fuzz_*.c))
build-fuzz/fuzz_%: build-fuzz/obj/tests/fuzz/fuzz_%.o $(KERNEL_OBJ)
	$(CXX) $(SAN) -fsanitize=fuzzer -o $@ $(filter %.o,$^) $(LLAMA_LDLIBS) $(LDLIBS) $(KERNEL_LDLIBS)
fuzz-bins: $(FUZZ_BINS)
fuzz-build:
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) CXX=$(FUZZ_CXX) OPT="-g -O1" \
	  SAN="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" fuzz-bins
fuzz: fuzz-build
	@bash tests/run-fuzz.sh $(FUZZ_S) $(FUZZ_BINS)

# The style (.clang-format) over every C and C++ source of ours.
FORMAT_FILES = $(shell git ls-files 'src/*.c' 'src/*.h' 'src/*.cpp' 'include/*.h' 'tests/*.h' 'tests/unit/*.[ch]' 'tests/fuzz/*.[ch]' \
                 'bench/*.[ch]' 'examples/*.c' 2>/dev/null)
CLANG_FORMAT ?= clang-format-14
format:
	@$(CLANG_FORMAT) -i $(FORMAT_FILES)
format-check:
	@$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_FILES) && echo "format: $(words $(FORMAT_FILES)) files, 1 passed, 0 failed"

run: deps model all
	@bash scripts/run-demo.sh

unit: $(UNIT_TESTS)
	@bash tests/run-unit.sh $(UNIT_TESTS)
unit-bins: $(UNIT_TESTS)

system: all
	@bash tests/run-system.sh $(BUILD)

asan:
	@$(MAKE) --no-print-directory BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" OPT="-O1 -g" all

# ThreadSanitizer: the unit tests and a concurrent system smoke (tests/run-tsan.sh; the
# suppressions, third-party only, are in tests/tsan.supp with their reasons).
tsan:
	@$(MAKE) --no-print-directory BUILD=build-tsan SAN="-fsanitize=thread" OPT="-O1 -g" all unit-bins
	@bash tests/run-tsan.sh build-tsan

# Allocation-failure torture (tests/run-torture.sh, docs/testing.md): an ASan+UBSan aiosd
# built with -DAIOS_TORTURE whose own allocations go through src/kernel/torture.c.
TORTURE_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup
torture:
	@$(MAKE) --no-print-directory BUILD=build-torture SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
	  OPT="-O1 -g" CFLAGS="-DAIOS_TORTURE" LDFLAGS="$(TORTURE_WRAP)" build-torture/aiosd
	@bash tests/run-torture.sh build-torture

test: deps model
	@bash tests/run-all.sh

# make install [PREFIX=/usr/local] [DESTDIR=]: aiosd and aios in bin/, llama.cpp's libraries
# and ggml's CPU backends in lib/aios/ (the binaries are relinked to find them there), the
# docs in share/doc/aios/, the systemd unit in lib/systemd/system/ (dist/aiosd.service,
# with its paths set to PREFIX).
PREFIX ?= /usr/local
install: llama-check
	@$(MAKE) --no-print-directory BUILD=build-install RUNTIME_LIB=$(PREFIX)/lib/aios build-install/aiosd build-install/aios
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/aios $(DESTDIR)$(PREFIX)/share/doc/aios \
	           $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 755 build-install/aiosd build-install/aios $(DESTDIR)$(PREFIX)/bin/
	cp -P $(LLAMA_LIB)/*.so* $(DESTDIR)$(PREFIX)/lib/aios/
	install -m 644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/aios/
	sed 's#@PREFIX@#$(PREFIX)#g' dist/aiosd.service >$(DESTDIR)$(PREFIX)/lib/systemd/system/aiosd.service
	@echo "installed under $(DESTDIR)$(PREFIX) (aiosd --version to check)"

bench: all
	@bash bench/run.sh
	@bash bench/agents.sh

docs: $(BUILD)/aiosd
	@bash scripts/gen-config-doc.sh $(BUILD)/aiosd

clean:
	rm -rf build build-asan build-fuzz build-tsan build-torture
