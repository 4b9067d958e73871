/* cli_console: placeholder */
