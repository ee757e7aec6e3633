#!/bin/sh
# A native agent for the system tier (tests/system/test_agents.py): run by the kernel in
# its sandbox, it speaks to the kernel only through the environment the kernel gave it
# (AIOS_URL, AIOS_TOKEN, OPENAI_BASE_URL) and prints what it got. Modes (argv[1]):
#   work          an LLM call (OpenAI door), a memory write and read (/query), a tool call;
#                 the last line of output is the JSON result
#   generate N    one chat completion of N tokens at temperature 0; prints its text
#   token-then-generate N
#                 leaves its token in /work/token (for the kill test), then generates N tokens
#   hold N        a memory block, a stored file, a slow tool call (t/slow, in the background),
#                 then N tokens generated: what it holds shows in its record meanwhile
#   sleep S       sleeps S seconds
#   hog MB        holds MB of memory for 30 s (tail buffers a line that does not end)
#   connect PORT  tries TCP to 127.0.0.1:PORT; prints "connect ok" or "connect refused: ..."
#   admin         tries POST /agents (an admin route) with its own token; prints the status
#   fail          exits 3
set -u
auth="Authorization: Bearer $AIOS_TOKEN"
# (a generous ceiling: under ThreadSanitizer a 300-token generation takes minutes)
post() { curl -sS --max-time 600 -H "$auth" -H 'Content-Type: application/json' -d "$2" "$AIOS_URL$1"; }
case "${1:-work}" in
work)
  echo "agent $AIOS_AGENT_NAME ($AIOS_AGENT_ID) at $AIOS_URL"
  llm=$(post /v1/chat/completions '{"messages":[{"role":"user","content":"Say hi."}],"max_tokens":8,"temperature":0}') || exit 10
  printf "llm: %s\n" "$llm"
  post /query '{"query_type":"memory","query_data":{"operation_type":"add_memory","params":{"content":"probe was here"}}}' >/dev/null || exit 11
  mem=$(post /query '{"query_type":"memory","query_data":{"operation_type":"retrieve_memory","params":{"content":"probe","k":1}}}') || exit 12
  printf "memory: %s\n" "$mem"
  tool=$(post /query '{"query_type":"tool","query_data":{"tool_calls":[{"name":"aios/calculator","parameters":{"expression":"6*7"}}]}}') || exit 13
  printf "tool: %s\n" "$tool"
  echo "stderr line" >&2
  echo '{"done": true, "answer": 42}'
  ;;
generate)
  out=$(post /v1/chat/completions "{\"messages\":[{\"role\":\"user\",\"content\":\"Write a long story about a lighthouse keeper.\"}],\"max_tokens\":$2,\"temperature\":0,\"ignore_eos\":true}") || exit 10
  printf "%s\n" "$out"
  ;;
token-then-generate)
  printf "%s\n" "$AIOS_TOKEN" > /work/token
  exec /bin/sh "$0" generate "$2"
  ;;
hold)
  post /query '{"query_type":"memory","query_data":{"operation_type":"add_memory","params":{"content":"held block"}}}' >/dev/null || exit 11
  post /query '{"query_type":"storage","query_data":{"operation_type":"write","params":{"file_path":"held.txt","content":"twelve bytes"}}}' >/dev/null || exit 12
  post /query '{"query_type":"tool","query_data":{"tool_calls":[{"name":"t/slow","parameters":{}}]}}' >/dev/null &
  exec /bin/sh "$0" generate "$2"
  ;;
sleep) sleep "$2" ;;
hog) { head -c "$(($2 * 1048576))" /dev/zero; sleep 30; } | tail -n 1 >/dev/null; echo "hog survived" ;;
connect)
  if out=$(curl -sS --max-time 5 "http://127.0.0.1:$2/" 2>&1); then echo "connect ok"; else echo "connect refused: $out"; fi
  ;;
admin)
  code=$(curl -s -o /dev/null -w "%{http_code}" -H "$auth" -d '{"command":["/bin/true"],"network":"full"}' "$AIOS_URL/agents")
  echo "admin route with my token: $code"
  ;;
fail) echo "failing on purpose" >&2; exit 3 ;;
esac
