# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_fortune_client_global_optspecs
    string join \n protocol= timeout= n/count= h/help V/version
end

function __fish_fortune_client_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_fortune_client_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_fortune_client_using_subcommand
    set -l cmd (__fish_fortune_client_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c fortune-client -n "__fish_fortune_client_needs_command" -l protocol -d 'Framing the server speaks' -r -f -a "qt\t'`QDataStream << QString`: u32 big-endian byte count, then UTF-16BE'
qt4\t'Qt 4 era: u16 big-endian size of what follows, then the `qt` bytes'
text\t'RFC 865: UTF-8 text, lines ending in CRLF'"
complete -c fortune-client -n "__fish_fortune_client_needs_command" -l timeout -d 'Seconds to wait for the connection, and for the whole answer' -r
complete -c fortune-client -n "__fish_fortune_client_needs_command" -s n -l count -d 'Fortunes to get, one connection each, printed separated by `%` lines' -r
complete -c fortune-client -n "__fish_fortune_client_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fortune-client -n "__fish_fortune_client_needs_command" -s V -l version -d 'Print version'
complete -c fortune-client -n "__fish_fortune_client_needs_command" -a "bench" -d 'Many concurrent clients, each looping connect, read one frame, check it, close, driven by a few threads; bounded by --duration and --connections. Prints connections/s, latency percentiles, errors by kind and the client\'s own CPU per connection'
complete -c fortune-client -n "__fish_fortune_client_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -l protocol -d 'Framing the server speaks' -r -f -a "qt\t'`QDataStream << QString`: u32 big-endian byte count, then UTF-16BE'
qt4\t'Qt 4 era: u16 big-endian size of what follows, then the `qt` bytes'
text\t'RFC 865: UTF-8 text, lines ending in CRLF'"
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -l timeout -d 'Seconds to wait for the connection, and for the whole answer' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -s c -l clients -d 'Concurrent clients: connections kept in flight, each replaced by the next as soon as it ends' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -s t -l threads -d 'Threads driving the clients, each many non-blocking connections (epoll) [default: 2, or 1 on a single CPU]' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -s d -l duration -d 'Seconds to run at most' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -l connections -d 'Connections to make at most, across all clients' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -l rate -d 'Start at most N connections a second across all clients, paced evenly (the clients still bound what is in flight): to compare servers at the same load rather than each at its own top speed. Default: as fast as the clients go' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -l idle -d 'Idle connections to open first and hold (never read) while the clients run' -r
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -l json -d 'Print the result as one JSON object instead of a table'
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -s q -l quiet -d 'No progress line on stderr'
complete -c fortune-client -n "__fish_fortune_client_using_subcommand bench" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fortune-client -n "__fish_fortune_client_using_subcommand help; and not __fish_seen_subcommand_from bench help" -f -a "bench" -d 'Many concurrent clients, each looping connect, read one frame, check it, close, driven by a few threads; bounded by --duration and --connections. Prints connections/s, latency percentiles, errors by kind and the client\'s own CPU per connection'
complete -c fortune-client -n "__fish_fortune_client_using_subcommand help; and not __fish_seen_subcommand_from bench help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
