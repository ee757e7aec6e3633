/*
 * main.c - aiosd's entry: the kernel's whole life is kernel_main (boot.c), so a harness can
 * run the same kernel in a thread of its own (tests/fuzz/fuzz_routes.c).
 */
#include "kernel.h"

int main(int argc, char **argv) { return kernel_main(argc, argv); }
