# gRPC endpoint (grpc/): both endpoints over the platform's real transport in
# one process, the real store behind them, driven by an nghttp2 client of
# our own (grpc_test_client.c); natively, under ASan and as a Windows exe
# under Wine over named pipes.
lcow_unit_test(NAME test_grpc
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_grpc.c ${CMAKE_CURRENT_LIST_DIR}/grpc_test_client.c
                       ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_grpc lcow_client lcow_core lcow_os lcow_test_layerblob TIMEOUT 600)
