/* Byte transport under the client library: client_posix.c (Unix socket) and
 * client_win.c (named pipe). Timeouts in ms; 0 = none. Failures are
 * LCOW_UNAVAILABLE with a message naming the operation. */
#ifndef LCOW_RPC_CLIENT_TRANSPORT_H
#define LCOW_RPC_CLIENT_TRANSPORT_H

#include <stddef.h>

#include "core/base/errors.h"

typedef struct lcow_transport lcow_transport;

const char *lcow_transport_default_address(void);
lcow_code lcow_transport_connect(const char *address, unsigned timeout_ms, lcow_transport **out,
                                 lcow_error *err);
/* Writes all of data. */
lcow_code lcow_transport_write(lcow_transport *t, const void *data, size_t len, unsigned timeout_ms,
                               lcow_error *err);
/* Reads at least one byte (*got > 0) or fails (end of stream included). */
lcow_code lcow_transport_read(lcow_transport *t, void *buf, size_t cap, size_t *got,
                              unsigned timeout_ms, lcow_error *err);
void lcow_transport_close(lcow_transport *t);
/* Monotonic clock in ms, for call deadlines. */
unsigned long long lcow_transport_now_ms(void);

#endif
