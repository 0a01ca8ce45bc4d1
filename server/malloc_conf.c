/*
 * malloc_conf.c — jemalloc's settings for the daemon (and for the
 * benchmarks that measure what the daemon does, e.g. bench_persist's
 * recovery).
 *
 * Transparent huge pages for jemalloc's extents and, where it pays, its
 * metadata. The table is hundreds of megabytes to gigabytes of small
 * records reached by random accesses: with 2 MiB pages a restart takes one
 * page fault per 2 MiB of records instead of one per 4 KiB (recovery was
 * bound by those faults: 1.28-1.6x faster restarts measured side by side,
 * bench/README.md "## Persistence"), and lookups miss the TLB less. The
 * cost is memory: an idle daemon is ~12 MiB larger (partly used huge pages
 * of each arena), a loaded one ~7% (200k rows: 325 against 303 MiB).
 * icsd never forks, so the copy-on-write stalls that make Redis turn huge
 * pages off do not arise. The system's setting must allow it
 * (/sys/kernel/mm/transparent_hugepage/enabled: always or madvise); the
 * environment overrides it: MALLOC_CONF=thp:never.
 *
 * jemalloc reads this symbol before the first allocation; with another
 * allocator (sanitizer builds) it is an unused string.
 */
extern const char *malloc_conf;
const char *malloc_conf = "thp:always,metadata_thp:auto";
