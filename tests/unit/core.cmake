# Snapshot metadata and the snapshotter (core/metastore, core/snapshotter).
lcow_unit_test(NAME test_metastore SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_metastore.c ${CMAKE_CURRENT_LIST_DIR}/test_util.c
               LIBS lcow_core LABELS core)
lcow_unit_test(NAME test_snapshotter
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_snapshotter.c ${CMAKE_CURRENT_LIST_DIR}/test_util.c
               LIBS lcow_core LABELS core TIMEOUT 900)
