/*
 * schema.h - the JSON Schema subset that tool manifests declare their "parameters" in, and
 * the validator that checks a model's tool-call arguments against it (internal header of
 * the tools module).
 *
 * Tool arguments are model output and therefore untrusted: before a tool runs, its
 * arguments are checked against the manifest's schema, and a failure names the field path
 * and what was expected, so the model can fix its call and retry. Only the keywords below
 * are understood; a manifest is linted once when it is loaded, so that a typo in a schema
 * ("integr", a pattern that does not compile) is reported to the tool's author instead of
 * silently accepting anything at call time.
 *
 * Keywords: type (a name or a list of names: object, array, string, number, integer,
 * boolean, null; "integer" is a number with no fractional part), properties, required,
 * additionalProperties (false, or a schema for the fields not in properties), enum, const,
 * minimum, maximum, exclusiveMinimum, exclusiveMaximum (numbers), minLength, maxLength
 * (UTF-8 code points), pattern (POSIX ERE, unanchored unless the pattern says ^ or $),
 * items (one schema for every element), minItems, maxItems, uniqueItems, allOf, anyOf,
 * oneOf. true and false are schemas too (anything, nothing). description, title, default,
 * examples, $schema and every keyword not listed are ignored; there is no $ref.
 *
 * Paths in messages start at "parameters": object fields append ".name", array elements
 * "[i]" (e.g. "parameters.items[2].name"); lint paths name schema keywords instead
 * (e.g. "parameters.properties.x.type"). Schema nesting is bounded by
 * TOOL_SCHEMA_MAX_DEPTH, so neither function recurses without limit. Neither allocates
 * beyond short-lived message text and a compiled pattern; both are thread-safe.
 */
#ifndef AIOS_TOOLS_SCHEMA_H
#define AIOS_TOOLS_SCHEMA_H

#include <stddef.h>
#include <cjson/cJSON.h>

#define TOOL_SCHEMA_MAX_DEPTH 32 /* nested subschemas (properties, items, anyOf, ...) */
#define TOOL_SCHEMA_PATH_MAX 256 /* bytes of field path kept for messages; longer is cut */

/*
 * Checks a manifest's "parameters" schema is one this validator understands: NULL or {}
 * (no parameters), or an object schema (type "object") whose keywords have the right JSON
 * types, whose "type" names are known, whose "required" entries are strings, whose enum,
 * allOf, anyOf and oneOf lists are non-empty, whose counts are non-negative integers and
 * whose patterns compile. AIOS_OK, or AIOS_ERR_INVALID with err naming the JSON path of the
 * bad keyword, e.g. "parameters.properties.x.type: unknown type 'integr'". err (errlen
 * bytes, always NUL-terminated when errlen > 0; may be NULL when errlen is 0) is set to ""
 * on success.
 */
int tool_schema_lint(const cJSON *schema, char *err, size_t errlen);

/*
 * Validates value against schema; a NULL or empty schema accepts anything, a NULL value is
 * "nothing" and fails any type constraint. AIOS_OK, or AIOS_ERR_INVALID with err naming the
 * field path and what was expected (the first violation found), e.g.
 * "parameters.city: expected a string, got number", "parameters: missing required field
 * 'city'", "parameters.n: 12 is above the maximum 10", "parameters.unit: 'kelvin' is not
 * one of \"c\", \"f\"", "parameters.name: longer than maxLength 8". The schema should have
 * passed tool_schema_lint: a malformed keyword is skipped, except an unknown type name or a
 * pattern that does not compile, which fail the check (closed, not open). err as for lint.
 */
int tool_schema_check(const cJSON *schema, const cJSON *value, char *err, size_t errlen);

#endif
