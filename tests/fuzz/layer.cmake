# Layer blob path fuzz target (blob reader + tar reader); seeds in
# corpus/blob are "mode byte + blob" files made by tests/fuzz/make-blob-seeds.py.
lcow_fuzz_target(NAME fuzz_blob
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_blob.c
                 LIBS lcow_layer
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/blob)
