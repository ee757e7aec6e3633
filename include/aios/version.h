/*
 * aios/version.h - the release of aiosd, the CLI and the SDK (one number for all three), so
 * `aiosd --version`, `aios --version` and a client's diagnostics agree. The build adds the
 * git revision it was made from (AIOS_GIT_REV, from the Makefile) where there is one.
 */
#ifndef AIOS_VERSION_H
#define AIOS_VERSION_H

#define AIOS_VERSION "0.14.0"

#ifndef AIOS_GIT_REV
#define AIOS_GIT_REV "unknown"
#endif

#endif
