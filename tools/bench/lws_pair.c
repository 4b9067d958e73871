/* lws_pair: the baseline for the bt2cd throughput benchmark (tools/bench/run).
 *
 * A minimal libwebsockets sender/receiver pair, built against the same
 * library as bt2cd:
 *
 *   lws_pair server COUNT [SIZE]      listens on 127.0.0.1 (a free port, printed
 *                                     as "port N" on stdout), counts received
 *                                     binary messages; once COUNT whole messages
 *                                     (COUNT*SIZE bytes) have arrived it answers
 *                                     with one small binary message, prints its
 *                                     own view as JSON and exits.
 *   lws_pair client PORT COUNT [SIZE] dials ws://127.0.0.1:PORT and sends COUNT
 *                                     binary messages of SIZE bytes (default
 *                                     1024) as fast as lws allows: one lws_write
 *                                     per message, from the writable callback,
 *                                     asking for writable again each time. It
 *                                     times from the upgrade to the server's
 *                                     answer and prints one JSON line.
 *
 * Build: cc -O2 -o lws_pair tools/bench/lws_pair.c $(pkg-config --cflags --libs libwebsockets)
 * Both sides use lws's defaults (no compression extension, 4 KiB service
 * buffer) and the same rx_buffer_size as bt2cd's protocol (65536).
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
#define WATCHDOG_SECONDS 300

static long count_target;
static size_t msg_size = 1024;
static int done;

/* server state */
static long rx_msgs;
static uint64_t rx_bytes;
static double rx_first, rx_last;
static int answer_pending;

/* client state */
static long tx_msgs;
static double tx_start, tx_end;
static unsigned char *txbuf;

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

static int server_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len) {
  (void)user;
  (void)in;
  switch (reason) {
    case LWS_CALLBACK_RECEIVE:
      if (rx_msgs == 0 && rx_bytes == 0) rx_first = now_s();
      rx_bytes += len;
      if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
        rx_msgs++;
        if (rx_msgs == count_target) {
          rx_last = now_s();
          answer_pending = 1;
          lws_callback_on_writable(wsi);
        }
      }
      return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
      if (answer_pending) {
        unsigned char b[LWS_PRE + 4];
        memcpy(b + LWS_PRE, "done", 4);
        answer_pending = 0;
        if (lws_write(wsi, b + LWS_PRE, 4, LWS_WRITE_BINARY) < 4) return -1;
      }
      return 0;
    case LWS_CALLBACK_CLOSED:
      done = 1;
      return 0;
    default:
      return 0;
  }
}

static int client_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                     size_t len) {
  (void)user;
  (void)len;
  switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
      tx_start = now_s();
      lws_callback_on_writable(wsi);
      return 0;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
      if (tx_msgs >= count_target) return 0;
      /* one message, one lws_write (lws masks the payload in place) */
      if (lws_write(wsi, txbuf + LWS_PRE, msg_size, LWS_WRITE_BINARY) < (int)msg_size) return -1;
      tx_msgs++;
      if (tx_msgs < count_target) lws_callback_on_writable(wsi);
      return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE:
      tx_end = now_s();
      done = 1;
      return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
      fprintf(stderr, "lws_pair: connection error: %s\n", in ? (const char *)in : "?");
      done = 2;
      return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
      if (!done) done = 2;
      return 0;
    default:
      return 0;
  }
}

static const struct lws_protocols server_protocols[] = {
    {PROTO, server_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
static const struct lws_protocols client_protocols[] = {
    {PROTO, client_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static int run_server(void) {
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = 0; /* any free port */
  info.iface = "127.0.0.1";
  info.protocols = server_protocols;
  info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
  info.gid = (gid_t)-1;
  info.uid = (uid_t)-1;
  struct lws_context *ctx = lws_create_context(&info);
  if (ctx == NULL) return 1;
  struct lws_vhost *vh = lws_get_vhost_by_name(ctx, "default");
  printf("port %d\n", vh ? lws_get_vhost_listen_port(vh) : -1);
  fflush(stdout);
  while (!done && lws_service(ctx, 0) >= 0) {
  }
  lws_context_destroy(ctx);
  double secs = rx_last - rx_first;
  printf("{\"role\":\"server\",\"messages\":%ld,\"bytes\":%llu,\"seconds\":%.6f,"
         "\"cpu_seconds\":%.4f}\n",
         rx_msgs, (unsigned long long)rx_bytes, secs, cpu_s());
  return rx_msgs == count_target ? 0 : 1;
}

static int run_client(int port) {
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.protocols = client_protocols;
  info.gid = (gid_t)-1;
  info.uid = (uid_t)-1;
  struct lws_context *ctx = lws_create_context(&info);
  if (ctx == NULL) return 1;
  txbuf = malloc(LWS_PRE + msg_size);
  if (txbuf == NULL) return 1;
  for (size_t i = 0; i < msg_size; i++) txbuf[LWS_PRE + i] = (unsigned char)('a' + i % 26);

  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = ctx;
  ci.address = "127.0.0.1";
  ci.port = port;
  ci.path = "/";
  ci.host = ci.address;
  ci.origin = ci.address;
  ci.protocol = PROTO;
  if (lws_client_connect_via_info(&ci) == NULL) return 1;
  while (!done && lws_service(ctx, 0) >= 0) {
  }
  lws_context_destroy(ctx);
  if (done != 1) return 1;
  double secs = tx_end - tx_start;
  double mb = (double)tx_msgs * (double)msg_size / 1e6;
  printf("{\"role\":\"client\",\"messages\":%ld,\"size\":%zu,\"seconds\":%.6f,"
         "\"msgs_per_s\":%.1f,\"MB_per_s\":%.2f,\"cpu_seconds\":%.4f}\n",
         tx_msgs, msg_size, secs, (double)tx_msgs / secs, mb / secs, cpu_s());
  free(txbuf);
  return 0;
}

int main(int argc, char **argv) {
  lws_set_log_level(LLL_ERR, NULL);
  signal(SIGPIPE, SIG_IGN);
  alarm(WATCHDOG_SECONDS); /* never outlive a broken run */
  if (argc >= 3 && strcmp(argv[1], "server") == 0) {
    count_target = atol(argv[2]);
    if (argc >= 4) msg_size = (size_t)atol(argv[3]);
    return run_server();
  }
  if (argc >= 4 && strcmp(argv[1], "client") == 0) {
    count_target = atol(argv[3]);
    if (argc >= 5) msg_size = (size_t)atol(argv[4]);
    return run_client(atoi(argv[2]));
  }
  fprintf(stderr, "usage: lws_pair server COUNT [SIZE] | lws_pair client PORT COUNT [SIZE]\n");
  return 2;
}
