# Request decoder fuzz target (framing + strict decoding + re-encoding).
lcow_fuzz_target(NAME fuzz_request SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_request.c
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/request LIBS lcow_rpc_proto)
