// GPU time per kernel name, from CUPTI's activity records (kernels inside CUDA graphs included).
// Preloaded into a process (LD_PRELOAD) it needs no change to the program: every 2 s, and at exit,
// it writes "$KERNEL_TIMES_OUT.<pid>.csv" (total ns, launches, name), longest first, and
// "$KERNEL_TIMES_OUT.<pid>.timeline.csv": the last TIMELINE kernels' start and end (ns, CUPTI's clock)
// and name, in start order, for the GPU's idle time between kernels (kernel_timeline.py). Rewritten
// periodically because the bench's pipeline child is killed rather than exiting.
//
// Memsets and memcopies (graph nodes included) go in both as "[memset N B]" / "[memcpy N B]": the GPU
// is not idle while one runs, and a gap before a kernel may be one of them.
//
// Built on the GPU machine against its CUPTI (bench/gpu/kernel-times.sh): the records' structs are
// the newest the headers define (KERNEL_RECORD, MEMSET_RECORD, MEMCPY_RECORD).
#include <cupti.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef KERNEL_RECORD
#error "define KERNEL_RECORD as the newest CUpti_ActivityKernelN"
#endif
#if !defined(MEMSET_RECORD) || !defined(MEMCPY_RECORD)
#error "define MEMSET_RECORD and MEMCPY_RECORD as the newest CUpti_ActivityMemsetN and CUpti_ActivityMemcpyN"
#endif

#define BUFFER_BYTES (16u << 20)
#define SLOTS 8192u
// About 40 SD3.5 Medium steps (≈ 750 kernels each), or 30 of Large.
#define TIMELINE 32768u

typedef struct {
  char *name;
  unsigned long long ns;
  unsigned long long launches;
} Entry;

typedef struct {
  unsigned long long start, end;
  const char *name;  // the table's copy
} Span;

static Entry table[SLOTS];
static Span ring[TIMELINE];
static unsigned long long spans;  // recorded so far; the ring holds the last TIMELINE
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
// The flusher thread and the exit handler both write the files: one at a time (an interleaved write
// once left a torn line in a timeline).
static pthread_mutex_t writing = PTHREAD_MUTEX_INITIALIZER;
static int active;

static unsigned hash(const char *s) {
  unsigned h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

static void add(const char *name, unsigned long long start, unsigned long long end) {
  if (!name) name = "(unnamed)";
  pthread_mutex_lock(&lock);
  for (unsigned i = hash(name) % SLOTS, probes = 0; probes < SLOTS; i = (i + 1) % SLOTS, probes++) {
    if (!table[i].name) table[i].name = strdup(name);
    if (strcmp(table[i].name, name) == 0) {
      table[i].ns += end - start;
      table[i].launches++;
      ring[spans++ % TIMELINE] = (Span){start, end, table[i].name};
      break;
    }
  }
  pthread_mutex_unlock(&lock);
}

static void CUPTIAPI requested(uint8_t **buffer, size_t *size, size_t *max_records) {
  *buffer = aligned_alloc(8, BUFFER_BYTES);
  *size = BUFFER_BYTES;
  *max_records = 0;
}

static void CUPTIAPI completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size, size_t valid) {
  (void)ctx;
  (void)stream;
  (void)size;
  CUpti_Activity *record = NULL;
  while (cuptiActivityGetNextRecord(buffer, valid, &record) == CUPTI_SUCCESS) {
    if (record->kind == CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL || record->kind == CUPTI_ACTIVITY_KIND_KERNEL) {
      const KERNEL_RECORD *k = (const KERNEL_RECORD *)record;
      add(k->name, k->start, k->end);
      __atomic_store_n(&active, 1, __ATOMIC_RELAXED);
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const MEMSET_RECORD *m = (const MEMSET_RECORD *)record;
      char name[64];
      snprintf(name, sizeof name, "[memset %llu B]", (unsigned long long)m->bytes);
      add(name, m->start, m->end);
    } else if (record->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const MEMCPY_RECORD *m = (const MEMCPY_RECORD *)record;
      char name[64];
      snprintf(name, sizeof name, "[memcpy %llu B]", (unsigned long long)m->bytes);
      add(name, m->start, m->end);
    }
  }
  free(buffer);
}

static int by_time(const void *a, const void *b) {
  const Entry *x = a, *y = b;
  return x->ns < y->ns ? 1 : x->ns > y->ns ? -1 : 0;
}

static int by_start(const void *a, const void *b) {
  const Span *x = a, *y = b;
  return x->start < y->start ? -1 : x->start > y->start ? 1 : 0;
}

// A CSV written beside its final name and renamed, so a reader never sees half of one.
typedef struct {
  FILE *f;
  char path[4096], tmp[4200];
} Csv;

static int csv_open(Csv *c, const char *prefix, const char *suffix, const char *header) {
  snprintf(c->path, sizeof c->path, "%s.%d%s.csv", prefix, (int)getpid(), suffix);
  snprintf(c->tmp, sizeof c->tmp, "%s.tmp", c->path);
  c->f = fopen(c->tmp, "w");
  if (c->f) fprintf(c->f, "%s\n", header);
  return c->f != NULL;
}

// Two numbers and the name, quoted (its quotes made apostrophes).
static void csv_row(Csv *c, unsigned long long a, unsigned long long b, const char *name) {
  fprintf(c->f, "%llu,%llu,\"", a, b);
  for (const char *ch = name; *ch; ch++) fputc(*ch == '"' ? '\'' : *ch, c->f);
  fprintf(c->f, "\"\n");
}

static void csv_close(Csv *c) {
  fclose(c->f);
  rename(c->tmp, c->path);
}

// Records arrive per buffer, not in start order: sorted here.
static void write_timeline(const char *prefix) {
  static Span copy[TIMELINE];
  pthread_mutex_lock(&lock);
  const unsigned n = spans < TIMELINE ? (unsigned)spans : TIMELINE;
  memcpy(copy, ring, n * sizeof copy[0]);
  pthread_mutex_unlock(&lock);
  qsort(copy, n, sizeof copy[0], by_start);
  Csv csv;
  if (!csv_open(&csv, prefix, ".timeline", "start,end,name")) return;
  for (unsigned i = 0; i < n; i++) csv_row(&csv, copy[i].start, copy[i].end, copy[i].name);
  csv_close(&csv);
}

static void write_totals(const char *prefix) {
  static Entry copy[SLOTS];
  unsigned n = 0;
  pthread_mutex_lock(&lock);
  for (unsigned i = 0; i < SLOTS; i++)
    if (table[i].name) copy[n++] = table[i];
  pthread_mutex_unlock(&lock);
  qsort(copy, n, sizeof copy[0], by_time);
  Csv csv;
  if (!csv_open(&csv, prefix, "", "ns,launches,name")) return;
  for (unsigned i = 0; i < n; i++) csv_row(&csv, copy[i].ns, copy[i].launches, copy[i].name);
  csv_close(&csv);
}

static void write_table(void) {
  const char *prefix = getenv("KERNEL_TIMES_OUT");
  if (!prefix || !__atomic_load_n(&active, __ATOMIC_RELAXED)) return;
  pthread_mutex_lock(&writing);
  write_totals(prefix);
  write_timeline(prefix);
  pthread_mutex_unlock(&writing);
}

static void *flusher(void *arg) {
  (void)arg;
  for (;;) {
    sleep(2);
    cuptiActivityFlushAll(0);
    write_table();
  }
  return NULL;
}

static void at_exit(void) {
  cuptiActivityFlushAll(1);
  write_table();
}

__attribute__((constructor)) static void start(void) {
  if (!getenv("KERNEL_TIMES_OUT")) return;
  if (cuptiActivityRegisterCallbacks(requested, completed) != CUPTI_SUCCESS) return;
  if (cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) return;
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET);
  cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY);
  pthread_t thread;
  pthread_create(&thread, NULL, flusher, NULL);
  pthread_detach(thread);
  atexit(at_exit);
}
