/* cli_console: `bt2cd console`, the client of a running node's console
 * (protocol in console.h). Must not: link the node itself; it only talks to
 * the socket. */
#ifndef BT2C_CLI_CONSOLE_H
#define BT2C_CLI_CONSOLE_H

/* argv[0] is "console". Returns the process exit status. */
int cli_console_main(int argc, char **argv);

#endif
