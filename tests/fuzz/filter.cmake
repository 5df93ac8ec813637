# Walk filter fuzz target (parser + both matchers). core/filter.c is compiled
# into the target itself so libFuzzer's coverage instrumentation sees it.
lcow_fuzz_target(NAME fuzz_filter
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_filter.c ${PROJECT_SOURCE_DIR}/core/filter.c
                 LIBS lcow_base lcow::pcre2
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/filter)
