# Layer store benchmark: bench_layer_store (importing a second image that
# shares layers with the first: a constant per shared layer, whatever its
# size, plus the one new layer's conversion).
add_executable(bench_layer_store ${CMAKE_CURRENT_LIST_DIR}/bench_layer_store.c)
target_link_libraries(bench_layer_store PRIVATE lcow_core lcow_test_layerblob)
