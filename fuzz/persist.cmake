# persist/ fuzz drivers: the WAL record reader and the snapshot loader.
ics_add_fuzzer(fuzz_wal_record SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_wal_record.c
               LIBS ics_persist)
ics_add_fuzzer(fuzz_snap_load SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/fuzz_snap_load.c
               LIBS ics_persist)
