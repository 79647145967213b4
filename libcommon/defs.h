/*
 * defs.h - macros every castbus translation unit may use.
 *
 * Header-only: compiler attributes, array length, and CB_ASSERT for broken
 * invariants (bugs abort, errors return; see ../shared/STYLE.md).
 */
#ifndef CB_DEFS_H
#define CB_DEFS_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#define CB_PRINTF(fmt_idx, args_idx) __attribute__((format(printf, fmt_idx, args_idx)))
#define CB_UNUSED                    __attribute__((unused))
#define CB_NORETURN                  __attribute__((noreturn))
#define CB_WARN_UNUSED               __attribute__((warn_unused_result))

#define CB_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CB_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define CB_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* Stringify a macro's value: CB_STR(__LINE__) gives "42". */
#define CB_STR_(x) #x
#define CB_STR(x)  CB_STR_(x)

/*
 * CB_ASSERT(cond): an invariant the code relies on. A failure is a bug in
 * castbus, never bad input: print where and abort so the core dump shows it.
 */
#define CB_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "castbus: assertion '%s' failed at %s:%d\n", #cond, __FILE__,          \
                    __LINE__);                                                                     \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif /* CB_DEFS_H */
