/* The in-memory fake core of the RPC tests (rpc_fake_core.c) against
 * containerd's snapshotter contract (snapshotter_contract.c): what the RPC
 * tests see from the fake is what a client would see from the store. */
#include "unit/snapshotter_contract.h"

lcow_snapshotter *fake_core_new(void);
void fake_core_free(lcow_snapshotter *s);

static lcow_snapshotter *open_fake(void **ctx)
{
    *ctx = NULL;
    return fake_core_new();
}

static void close_fake(lcow_snapshotter *s, void *ctx)
{
    (void)ctx;
    fake_core_free(s);
}

/* The fake has no filter grammar (only "kind==committed") and calls Walk's
 * callback under its lock (a callback that calls it would deadlock). */
static const contract_store fake_store = {
    .name = "contract: tests/unit/rpc_fake_core.c",
    .open = open_fake,
    .close = close_fake,
    .filters = false,
    .walk_unlocked = false,
};

int main(void)
{
    return contract_run(&fake_store);
}
