# bench_snapshotter: snapshot metadata at 1k..1M snapshots beside raw LevelDB.
add_executable(bench_snapshotter ${CMAKE_CURRENT_LIST_DIR}/bench_snapshotter.c)
target_link_libraries(bench_snapshotter PRIVATE lcow_core lcow::leveldb)
target_include_directories(bench_snapshotter PRIVATE ${PROJECT_SOURCE_DIR})
