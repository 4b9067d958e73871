/* lws_forwarder: the baseline for the relay benchmark (tools/bench/relay).
 *
 * A minimal libwebsockets forwarder, with the load generator and the counting
 * receiver around it, built against the same library as bt2cd:
 *
 *   lws_forwarder recv COUNT [SIZE]
 *       Listens on 127.0.0.1 (a free port, printed as "port N"), counts whole
 *       binary messages; at the COUNT-th it prints one JSON line (first and
 *       last arrival on CLOCK_MONOTONIC, CPU seconds) and exits. Every message
 *       must be SIZE bytes (default 1024).
 *   lws_forwarder forward DEST_PORT [SERV_BUF]
 *       Dials ws://127.0.0.1:DEST_PORT; once that is up, listens on 127.0.0.1
 *       and prints "port N". Each whole binary message received on the server
 *       side is copied into a FIFO and written to the outgoing client
 *       connection with one lws_write per message, one per writable callback
 *       (lws masks it, as RFC 6455 requires of a client). When the FIFO holds
 *       FIFO_HIGH messages it stops reading (lws_rx_flow_control) until it is
 *       down to FIFO_LOW: nothing is ever dropped. Runs until SIGTERM/SIGINT,
 *       then prints one JSON line. SERV_BUF sets pt_serv_buf_size (default:
 *       lws's, 4096: at most 4 KiB read per POLLIN).
 *   lws_forwarder send PORT COUNT [SIZE]
 *       The load generator: dials ws://127.0.0.1:PORT and sends COUNT binary
 *       messages of SIZE bytes, each its own masked WebSocket frame, but many
 *       frames per write: a 64 KiB batch of pre-masked frames is built once and
 *       handed to lws raw (LWS_WRITE_HTTP on a ws connection is sent as is), so
 *       that the generator costs next to nothing and the forwarder is the one
 *       measured. Prints "start T" (CLOCK_MONOTONIC) when it starts sending,
 *       then idles until SIGTERM/SIGINT and prints one JSON line.
 *
 * Build: cc -O2 -o lws_forwarder tools/bench/lws_forwarder.c \
 *           $(pkg-config --cflags --libs libwebsockets)
 * Same lws settings as lws_pair: no extensions, rx_buffer_size 65536. The
 * receiver reads 64 KiB per POLLIN (it is not the one measured).
 */
#include <libwebsockets.h>

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PROTO "bench.v1"
#define WATCHDOG_SECONDS 600
#define FIFO_HIGH 512 /* messages: stop reading at this many queued... */
#define FIFO_LOW 128  /* ...read again at this many */
#define BATCH_BYTES 65536

static volatile sig_atomic_t stop;
static int done;
static long count_target;
static size_t msg_size = 1024;

static double cpu_s(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_stop(int sig) {
  (void)sig;
  stop = 1;
}

static struct lws_context *make_context(const struct lws_protocols *protocols, int listen,
                                        unsigned serv_buf) {
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = listen ? 0 : CONTEXT_PORT_NO_LISTEN; /* 0: any free port */
  info.iface = listen ? "127.0.0.1" : NULL;
  info.protocols = protocols;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  info.pt_serv_buf_size = serv_buf;
  info.gid = (gid_t)-1;
  info.uid = (uid_t)-1;
  return lws_create_context(&info);
}

static int listen_port(struct lws_context *ctx) {
  struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
  return vh ? lws_get_vhost_listen_port(vh) : -1;
}

static struct lws *dial(struct lws_context *ctx, int port) {
  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = ctx;
  ci.address = "127.0.0.1";
  ci.port = port;
  ci.path = "/";
  ci.host = ci.address;
  ci.origin = ci.address;
  ci.protocol = PROTO;
  return lws_client_connect_via_info(&ci);
}

static void run_loop(struct lws_context *ctx) {
  while (!done && !stop && lws_service(ctx, 0) >= 0) {
  }
}

/* ---- recv: the counting receiver ------------------------------------------ */

static long rx_msgs;
static uint64_t rx_bytes;
static size_t rx_cur; /* bytes of the message being received */
static double rx_first, rx_last;
static int rx_bad;

static int recv_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len) {
  (void)user;
  (void)in;
  if (reason == LWS_CALLBACK_RECEIVE) {
    if (rx_msgs == 0 && rx_cur == 0) rx_first = now_s();
    rx_bytes += len;
    rx_cur += len;
    if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
      if (rx_cur != msg_size) rx_bad++;
      rx_cur = 0;
      if (++rx_msgs == count_target) {
        rx_last = now_s();
        done = 1;
      }
    }
  }
  return 0;
}

static const struct lws_protocols recv_protocols[] = {
    {PROTO, recv_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int run_recv(void) {
  struct lws_context *ctx = make_context(recv_protocols, 1, 65536);
  if (ctx == NULL) return 1;
  printf("port %d\n", listen_port(ctx));
  fflush(stdout);
  run_loop(ctx);
  double cpu = cpu_s();
  lws_context_destroy(ctx);
  printf("{\"role\":\"recv\",\"messages\":%ld,\"bytes\":%llu,\"bad_sizes\":%d,\"first\":%.6f,"
         "\"last\":%.6f,\"cpu_seconds\":%.4f}\n",
         rx_msgs, (unsigned long long)rx_bytes, rx_bad, rx_first, rx_last, cpu);
  return rx_msgs == count_target && rx_bad == 0 ? 0 : 1;
}

/* ---- forward: the forwarder measured ------------------------------------------ */

struct fmsg {
  struct fmsg *next;
  size_t len;
  unsigned char data[]; /* LWS_PRE + len */
};

static struct lws *fw_in, *fw_out;
static struct fmsg *fifo_head, *fifo_tail;
static long fifo_count, fifo_max;
static long fw_forwarded, fw_pauses;
static int fw_paused, fw_out_up;
static unsigned char *fw_asm; /* a message arriving in several pieces */
static size_t fw_asm_len, fw_asm_cap;

static void fifo_push(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
  struct fmsg *m = malloc(sizeof *m + LWS_PRE + alen + blen);
  if (m == NULL) abort();
  m->next = NULL;
  m->len = alen + blen;
  if (alen) memcpy(m->data + LWS_PRE, a, alen);
  memcpy(m->data + LWS_PRE + alen, b, blen);
  if (fifo_tail) fifo_tail->next = m;
  else fifo_head = m;
  fifo_tail = m;
  if (++fifo_count > fifo_max) fifo_max = fifo_count;
}

static int fw_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len) {
  (void)user;
  switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
      if (fw_in) return -1; /* one upstream at a time */
      fw_in = wsi;
      return 0;
    case LWS_CALLBACK_RECEIVE: {
      int last = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;
      if (!last || fw_asm_len) { /* a piece: keep it until the message is whole */
        if (fw_asm_len + len > fw_asm_cap) {
          fw_asm_cap = (fw_asm_len + len) * 2;
          fw_asm = realloc(fw_asm, fw_asm_cap);
          if (fw_asm == NULL) abort();
        }
        if (!last) {
          memcpy(fw_asm + fw_asm_len, in, len);
          fw_asm_len += len;
          return 0;
        }
      }
      fifo_push(fw_asm, fw_asm_len, in, len);
      fw_asm_len = 0;
      if (fw_out) lws_callback_on_writable(fw_out);
      if (fifo_count >= FIFO_HIGH && !fw_paused) {
        lws_rx_flow_control(wsi, 0);
        fw_paused = 1;
        fw_pauses++;
      }
      return 0;
    }
    case LWS_CALLBACK_CLOSED:
      if (wsi == fw_in) fw_in = NULL;
      return 0;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      fw_out_up = 1;
      return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
      struct fmsg *m = fifo_head;
      if (m == NULL) return 0;
      /* one message, one lws_write (lws masks the payload in place) */
      if (lws_write(wsi, m->data + LWS_PRE, m->len, LWS_WRITE_BINARY) < (int)m->len) return -1;
      fifo_head = m->next;
      if (fifo_head == NULL) fifo_tail = NULL;
      fifo_count--;
      fw_forwarded++;
      free(m);
      if (fw_paused && fifo_count <= FIFO_LOW && fw_in) {
        lws_rx_flow_control(fw_in, 1);
        fw_paused = 0;
      }
      if (fifo_head) lws_callback_on_writable(wsi);
      return 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      fprintf(stderr, "lws_forwarder: connection error: %s\n", in ? (const char *)in : "?");
      done = 2;
      return 0;
    case LWS_CALLBACK_CLIENT_CLOSED: /* the receiver has what it wanted: wait for SIGTERM */
      fw_out = NULL;
      return 0;
    default:
      return 0;
  }
}

static const struct lws_protocols fw_protocols[] = {
    {PROTO, fw_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int run_forward(int dest_port, unsigned serv_buf) {
  struct lws_context *ctx = make_context(fw_protocols, 1, serv_buf);
  if (ctx == NULL) return 1;
  fw_out = dial(ctx, dest_port);
  if (fw_out == NULL) return 1;
  while (!fw_out_up && !done && !stop && lws_service(ctx, 0) >= 0) {
  }
  if (!fw_out_up) return 1;
  printf("port %d\n", listen_port(ctx));
  fflush(stdout);
  run_loop(ctx);
  double cpu = cpu_s();
  printf("{\"role\":\"forward\",\"forwarded\":%ld,\"queued\":%ld,\"max_queued\":%ld,"
         "\"rx_pauses\":%ld,\"cpu_seconds\":%.4f}\n",
         fw_forwarded, fifo_count, fifo_max, fw_pauses, cpu);
  fflush(stdout);
  lws_context_destroy(ctx);
  return done == 2 ? 1 : 0;
}

/* ---- send: the load generator -------------------------------------------------- */

static unsigned char *tx_batch; /* LWS_PRE + frames_per_batch pre-masked frames */
static size_t frame_len, frames_per_batch;
static long tx_msgs;
static double tx_start, tx_end;
static int tx_up;

static void build_batch(void) {
  size_t hdr = msg_size < 126 ? 2 : msg_size < 65536 ? 4 : 10;
  frame_len = hdr + 4 + msg_size;
  frames_per_batch = BATCH_BYTES / frame_len;
  if (frames_per_batch == 0) frames_per_batch = 1;
  tx_batch = malloc(LWS_PRE + frames_per_batch * frame_len);
  if (tx_batch == NULL) abort();
  unsigned char *f = tx_batch + LWS_PRE;
  for (size_t k = 0; k < frames_per_batch; k++, f += frame_len) {
    unsigned char key[4];
    for (int i = 0; i < 4; i++) key[i] = (unsigned char)rand(); /* a load generator */
    f[0] = 0x82; /* FIN, binary */
    if (hdr == 2) {
      f[1] = (unsigned char)(0x80 | msg_size);
    } else if (hdr == 4) {
      f[1] = 0x80 | 126;
      f[2] = (unsigned char)(msg_size >> 8);
      f[3] = (unsigned char)msg_size;
    } else {
      f[1] = 0x80 | 127;
      for (int i = 0; i < 8; i++) f[2 + i] = (unsigned char)((uint64_t)msg_size >> (56 - 8 * i));
    }
    memcpy(f + hdr, key, 4);
    for (size_t i = 0; i < msg_size; i++)
      f[hdr + 4 + i] = (unsigned char)('a' + (k + i) % 26) ^ key[i & 3];
  }
}

static int send_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                   size_t len) {
  (void)user;
  (void)len;
  switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      tx_up = 1;
      tx_start = now_s();
      printf("start %.6f\n", tx_start);
      fflush(stdout);
      lws_callback_on_writable(wsi);
      return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE: {
      if (tx_msgs >= count_target) return 0;
      size_t k = frames_per_batch;
      if ((long)k > count_target - tx_msgs) k = (size_t)(count_target - tx_msgs);
      /* k whole frames, sent as they are (lws only frames LWS_WRITE_BINARY) */
      if (lws_write(wsi, tx_batch + LWS_PRE, k * frame_len, LWS_WRITE_HTTP) < (int)(k * frame_len))
        return -1;
      tx_msgs += (long)k;
      if (tx_msgs < count_target) lws_callback_on_writable(wsi);
      else tx_end = now_s();
      return 0;
    }
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      fprintf(stderr, "lws_forwarder: connection error: %s\n", in ? (const char *)in : "?");
      done = 2;
      return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
      if (tx_msgs < count_target) done = 2; /* closed early */
      return 0;
    default:
      return 0;
  }
}

static const struct lws_protocols send_protocols[] = {
    {PROTO, send_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int run_send(int port) {
  build_batch();
  struct lws_context *ctx = make_context(send_protocols, 0, 0);
  if (ctx == NULL) return 1;
  if (dial(ctx, port) == NULL) return 1;
  run_loop(ctx);
  double cpu = cpu_s();
  lws_context_destroy(ctx);
  printf("{\"role\":\"send\",\"messages\":%ld,\"size\":%zu,\"frames_per_write\":%zu,"
         "\"start\":%.6f,\"end\":%.6f,\"cpu_seconds\":%.4f}\n",
         tx_msgs, msg_size, frames_per_batch, tx_start, tx_end, cpu);
  free(tx_batch);
  return tx_up && done != 2 ? 0 : 1;
}

int main(int argc, char **argv) {
  lws_set_log_level(LLL_ERR, NULL);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_stop);
  signal(SIGINT, on_stop);
  alarm(WATCHDOG_SECONDS); /* never outlive a broken run */
  if (argc >= 3 && strcmp(argv[1], "recv") == 0) {
    count_target = atol(argv[2]);
    if (argc >= 4) msg_size = (size_t)atol(argv[3]);
    return run_recv();
  }
  if (argc >= 3 && strcmp(argv[1], "forward") == 0)
    return run_forward(atoi(argv[2]), argc >= 4 ? (unsigned)atol(argv[3]) : 0);
  if (argc >= 4 && strcmp(argv[1], "send") == 0) {
    count_target = atol(argv[3]);
    if (argc >= 5) msg_size = (size_t)atol(argv[4]);
    return run_send(atoi(argv[2]));
  }
  fprintf(stderr,
          "usage: lws_forwarder recv COUNT [SIZE] | forward DEST_PORT [SERV_BUF] |"
          " send PORT COUNT [SIZE]\n");
  return 2;
}
