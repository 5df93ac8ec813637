/* Compiler attributes, spelled once. */
#ifndef LCOW_COMPILER_H
#define LCOW_COMPILER_H

/* LCOW_PRINTF(fmt, args): the function's argument number fmt is a printf
 * format whose arguments start at number args (0 for a va_list), so the
 * compiler checks every call. mingw checks against its C99 stdio
 * (__USE_MINGW_ANSI_STDIO: %zu, %lld...), hence gnu_printf there. */
#if defined(__MINGW32__)
#define LCOW_PRINTF(fmt, args) __attribute__((format(gnu_printf, fmt, args)))
#elif defined(__GNUC__)
#define LCOW_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define LCOW_PRINTF(fmt, args)
#endif

#endif
