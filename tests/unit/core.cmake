# Snapshot metadata and the snapshotter (core/metastore, core/snapshotter).
lcow_unit_test(NAME test_metastore SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metastore.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_core LABELS core)
# containerd's contract (snapshotter_contract.c, parameterised by how a store
# is opened) and the store's own cases; the LCOW mounts and scratch policy
# in their own file.
lcow_unit_test(NAME test_snapshotter
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_snapshotter.c
                       ${CMAKE_CURRENT_LIST_DIR}/snapshotter_contract.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_core LABELS core TIMEOUT 900)
lcow_unit_test(NAME test_snapshotter_lcow
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_snapshotter_lcow.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_core LABELS core TIMEOUT 900)
# The same contract against the RPC tests' in-memory fake core.
lcow_unit_test(NAME test_rpc_fake_core
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_rpc_fake_core.c
                       ${CMAKE_CURRENT_LIST_DIR}/snapshotter_contract.c
                       ${CMAKE_CURRENT_LIST_DIR}/rpc_fake_core.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_os LABELS core)
