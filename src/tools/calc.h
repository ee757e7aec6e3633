/*
 * calc.h - the safe arithmetic evaluator behind the kernel's built-in calculator tool
 * (internal header of the tools module).
 *
 * Models are bad at arithmetic, so agents get a calculator; its input is model output and
 * therefore untrusted. The evaluator is a small recursive-descent parser over a fixed
 * grammar (numbers, + - * / % ^ **, unary signs, parentheses, a fixed table of constants
 * and math functions): nothing is executed, nothing is allocated, the input length and the
 * nesting depth (hence the recursion depth) are bounded, and every error names what is wrong
 * and the byte offset where it was found, so the model can fix its call.
 */
#ifndef AIOS_TOOLS_CALC_H
#define AIOS_TOOLS_CALC_H

#include <stddef.h>

#define TOOL_CALC_MAX_LEN 4096 /* bytes of expression, not counting the terminating NUL */
#define TOOL_CALC_MAX_DEPTH 64 /* nested parentheses, function calls and exponents */

/*
 * Evaluates an arithmetic expression. AIOS_OK with *out set, or AIOS_ERR_INVALID with err
 * saying what is wrong and at which character offset, e.g. "unexpected ')' at offset 4",
 * "unknown function 'foo' at offset 0", "division by zero at offset 1", "result is not a
 * finite number at offset 0". *out is left untouched on error. err (errlen bytes, always
 * NUL-terminated when errlen > 0; may be NULL when errlen is 0) is set to "" on success.
 *
 * Grammar (lowest precedence first; ^ and ** are right-associative and bind tighter than
 * unary minus, so -2^2 = -4 and 2^-1 = 0.5):
 *   sum     := term (('+' | '-') term)*
 *   term    := unary (('*' | '/' | '%') unary)*          % is fmod
 *   unary   := ('+' | '-')* power
 *   power   := primary (('^' | '**') unary)?
 *   primary := number | constant | function '(' sum (',' sum)* ')' | '(' sum ')'
 * Numbers are decimal with optional fraction and exponent (1, 1.5, .5, 1.5e3); constants
 * are pi and e; functions are sqrt abs sin cos tan asin acos atan log (natural) log10 log2
 * exp floor ceil round pow(a,b) min(a,...) max(a,...) hypot(a,b). Division or modulo by
 * zero and any non-finite intermediate or final value are errors.
 */
int tool_calc_eval(const char *expr, double *out, char *err, size_t errlen);

#endif
