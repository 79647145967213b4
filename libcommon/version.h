/*
 * version.h - which castbus build this is.
 *
 * The values live in a source file the Makefile generates into the build
 * directory (rewritten only when the version or git revision changes), so a
 * new commit relinks the binaries instead of recompiling everything.
 */
#ifndef CB_VERSION_H
#define CB_VERSION_H

extern const char cb_version[];  /* "0.1.0", from the VERSION file */
extern const char cb_revision[]; /* short git revision, "-dirty" when modified */

#endif /* CB_VERSION_H */
