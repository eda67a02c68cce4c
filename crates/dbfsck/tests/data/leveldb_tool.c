/* The LevelDB side of tests/leveldb_oracle.rs, through LevelDB's own C API (libleveldb-dev):
 *   leveldb_tool write DIR N M   N puts, closed cleanly (tables + MANIFEST), then M more puts
 *                                and an exit without close (they stay in the WAL only)
 *   leveldb_tool verify DIR      open with paranoid_checks, iterate with verify_checksums;
 *                                prints "keys=K" and, on failure, "error=…"; exit 1 on error */
#include <leveldb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put_range(leveldb_t *db, int from, int to) {
  leveldb_writeoptions_t *wo = leveldb_writeoptions_create();
  char *err = NULL;
  char key[32], val[128];
  for (int i = from; i < to; i++) {
    snprintf(key, sizeof key, "key%08d", (i * 7919) % 1000003);
    for (int j = 0; j < 100; j++) val[j] = 'a' + (i * 31 + j * 7) % 26;
    leveldb_put(db, wo, key, strlen(key), val, 100, &err);
    if (err) { fprintf(stderr, "put: %s\n", err); exit(2); }
  }
  leveldb_writeoptions_destroy(wo);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  leveldb_options_t *o = leveldb_options_create();
  char *err = NULL;
  if (strcmp(argv[1], "write") == 0 && argc == 5) {
    leveldb_options_set_create_if_missing(o, 1);
    leveldb_options_set_write_buffer_size(o, 256 * 1024);
    leveldb_options_set_compression(o, leveldb_no_compression);
    leveldb_t *db = leveldb_open(o, argv[2], &err);
    if (err) { fprintf(stderr, "open: %s\n", err); return 2; }
    int n = atoi(argv[3]), m = atoi(argv[4]);
    put_range(db, 0, n);
    leveldb_close(db);
    db = leveldb_open(o, argv[2], &err);
    if (err) { fprintf(stderr, "reopen: %s\n", err); return 2; }
    put_range(db, n, n + m);
    _exit(0); /* no close: the last puts are in the WAL only */
  }
  if (strcmp(argv[1], "verify") == 0) {
    leveldb_options_set_paranoid_checks(o, 1);
    leveldb_t *db = leveldb_open(o, argv[2], &err);
    if (err) { printf("keys=0\nerror=%s\n", err); return 1; }
    leveldb_readoptions_t *ro = leveldb_readoptions_create();
    leveldb_readoptions_set_verify_checksums(ro, 1);
    leveldb_iterator_t *it = leveldb_create_iterator(db, ro);
    long keys = 0;
    for (leveldb_iter_seek_to_first(it); leveldb_iter_valid(it); leveldb_iter_next(it)) keys++;
    leveldb_iter_get_error(it, &err);
    printf("keys=%ld\n", keys);
    if (err) { printf("error=%s\n", err); return 1; }
    return 0;
  }
  return 2;
}
