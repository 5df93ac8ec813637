# RPC unit tests: codec and framing (no core), dispatch against a fake core,
# client library against an in-process server.
lcow_unit_test(NAME test_proto SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_proto.c LIBS lcow_rpc_proto)
