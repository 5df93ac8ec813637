# Layer import formats: the dm-verity hash tree (core/disk/verity), the fixed
# VHD footer (core/disk/vhd), SHA-256 (core/disk/sha256), the layer blob
# reader (core/layer/blob) and Apply (core/layer/apply, core/snapshotter_apply).
#
# Fixture layer_golden (tests/layer/make-golden.sh, run natively in both
# builds) writes the golden tars and tar2ext4-ref's images of them; the win64
# tests read them under Wine through LCOW_GOLDEN_DIR. Without ../shared the
# fixture says so and the tests skip those cases. Native runs also get the
# Linux tools the tests compare against (veritysetup, gzip, zstd, sha256sum);
# under Wine, test_verity exports its images and tests/layer/check-verity.sh
# has veritysetup verify them.
if(NOT TARGET lcow_layer)
  return()
endif()

set(LCOW_SHARED_DIR "${PROJECT_SOURCE_DIR}/../shared" CACHE PATH
    "Reference tools and data (tar2ext4-ref, make_layers.py, golden.json)")
set(layer_golden ${LCOW_TEST_TMP_ROOT}/layer-golden)
add_test(NAME layer_golden_fixture
         COMMAND sh ${PROJECT_SOURCE_DIR}/tests/layer/make-golden.sh ${LCOW_SHARED_DIR} ${layer_golden})
set_tests_properties(layer_golden_fixture PROPERTIES FIXTURES_SETUP layer_golden
                                                     LABELS "unit;layer" TIMEOUT 300)
if(WIN32)
  string(REPLACE "/" "\\" layer_golden_env "Z:${layer_golden}")
else()
  set(layer_golden_env ${layer_golden})
endif()

find_program(LCOW_VERITYSETUP veritysetup PATHS /usr/sbin /sbin NO_CMAKE_FIND_ROOT_PATH)
set(lcow_layer_env "LCOW_GOLDEN_DIR=${layer_golden_env}")
if(NOT WIN32)
  foreach(t VERITYSETUP)
    if(LCOW_${t})
      list(APPEND lcow_layer_env "LCOW_${t}=${LCOW_${t}}")
    endif()
  endforeach()
  foreach(t gzip zstd sha256sum)
    find_program(LCOW_TOOL_${t} ${t})
    string(TOUPPER ${t} upper)
    if(LCOW_TOOL_${t})
      list(APPEND lcow_layer_env "LCOW_${upper}=${LCOW_TOOL_${t}}")
    endif()
  endforeach()
endif()
# These three tests need the golden fixture as well as whatever
# LCOW_TEST_FIXTURE holds (the Wine fixture in the win64 build); the shared
# tests/ scope gets LCOW_TEST_FIXTURE and LCOW_TEST_ENV back as they were.
set(lcow_layer_saved_fixture "${LCOW_TEST_FIXTURE}")
set(lcow_layer_saved_env "${LCOW_TEST_ENV}")
set(LCOW_TEST_ENV ${lcow_layer_env})
set(LCOW_TEST_FIXTURE layer_golden)
foreach(t verity vhd blob)
  lcow_unit_test(NAME test_${t}
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_${t}.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
                 LIBS lcow_layer lcow_disk LABELS layer)
  if(lcow_layer_saved_fixture)
    set_property(TEST test_${t} APPEND PROPERTY FIXTURES_REQUIRED ${lcow_layer_saved_fixture})
  endif()
endforeach()
target_link_libraries(test_blob PRIVATE lcow_test_layerblob)
# Apply (core/layer/apply.h, lcow_snapshotter_apply): the whole blob ->
# layer.vhd sequence, the golden cases, failures and cancellation, and the
# store's side of it.
lcow_unit_test(NAME test_apply
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_apply.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_core lcow_test_layerblob LABELS layer TIMEOUT 600)
if(lcow_layer_saved_fixture)
  set_property(TEST test_apply APPEND PROPERTY FIXTURES_REQUIRED ${lcow_layer_saved_fixture})
endif()
set(LCOW_TEST_ENV "${lcow_layer_saved_env}")
set(LCOW_TEST_FIXTURE "${lcow_layer_saved_fixture}")

# What test_verity wrote (natively and under Wine), verified by veritysetup.
if(LCOW_VERITYSETUP)
  set_tests_properties(test_verity PROPERTIES FIXTURES_SETUP layer_verity_export)
  add_test(NAME test_verity_exported
           COMMAND sh ${PROJECT_SOURCE_DIR}/tests/layer/check-verity.sh
                   ${LCOW_TEST_TMP_ROOT}/test_verity/export ${LCOW_VERITYSETUP})
  set_tests_properties(test_verity_exported PROPERTIES FIXTURES_REQUIRED layer_verity_export
                                                       LABELS "unit;layer" TIMEOUT 300)
endif()

# The layer store (core/layer/store.h) through Apply and directly: shared
# layers converted and stored once, references, prune, the size bound,
# concurrent Applies, crash leftovers and the check.
lcow_unit_test(NAME test_layer_store
               SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_layer_store.c ${CMAKE_CURRENT_LIST_DIR}/testlib.c
               LIBS lcow_core lcow_test_layerblob LABELS layer TIMEOUT 600)
