// spqr — SpQR.Native's command line. Thin: every command parses its options, calls a library, renders the result.
// Errors become one line on stderr and a non-zero exit code (the stack trace only with --verbose).
using SpQR.Cli;

return CliApp.Run(args, Console.Out, Console.Error);
