# RPC unit tests: codec and framing (no core), dispatch against a fake core,
# client library against an in-process server.
lcow_unit_test(NAME test_proto SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_proto.c LIBS lcow_rpc_proto)
lcow_unit_test(NAME test_frame SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_frame.c LIBS lcow_rpc_proto)
# The fake core in test_dispatch.c stands in for core/snapshotter.c.
lcow_unit_test(NAME test_dispatch
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_dispatch.c ${PROJECT_SOURCE_DIR}/rpc/dispatch.c
               LIBS lcow_rpc_proto lcow_os)
# Client + server transport in one process over the platform's real
# transport, with the in-memory fake core (rpc_fake_core.c).
lcow_unit_test(NAME test_client
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_client.c ${CMAKE_CURRENT_LIST_DIR}/rpc_fake_core.c
                       ${CMAKE_CURRENT_LIST_DIR}/testlib.c
                       ${LCOW_RPC_SERVER_SOURCES}
               LIBS lcow_client lcow_os $<$<BOOL:${WIN32}>:psapi> TIMEOUT 300)
# Sessions and the worker pool through rpc/session.h alone: a fake
# transport (lcow_session_ops), no sockets, the same fake core.
lcow_unit_test(NAME test_session
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_session.c ${CMAKE_CURRENT_LIST_DIR}/rpc_fake_core.c
                       ${CMAKE_CURRENT_LIST_DIR}/testlib.c
                       ${PROJECT_SOURCE_DIR}/rpc/session.c ${PROJECT_SOURCE_DIR}/rpc/dispatch.c
               LIBS lcow_rpc_proto lcow_os)
# The allocation seam (core/base/alloc.h) and its campaign over the RPC
# paths: the real snapshotter (no scratch disks) behind the real transport.
lcow_unit_test(NAME test_alloc SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_alloc.c
               LIBS lcow_rpc lcow_client TIMEOUT 600)
# The Prometheus endpoint (rpc/metrics.c) on the real store (no scratch
# disks) and loopback TCP (core/os/tcp.h).
lcow_unit_test(NAME test_metrics
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metrics.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_rpc)
