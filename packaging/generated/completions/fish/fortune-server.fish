complete -c fortune-server -l listen -d 'Address to listen on when systemd passes no socket (repeatable). Under systemd (INVOCATION_ID set), only if given: a unit started without its socket is an error' -r
complete -c fortune-server -l protocol -d 'Framing, unless a listening socket\'s systemd name (FileDescriptorName=) is qt, qt4 or text: the name wins (with a warning when this is set and differs). Under Accept=yes systemd names the connection "connection": this option decides' -r -f -a "qt\t'`QDataStream << QString`: u32 big-endian byte count, then UTF-16BE'
qt4\t'Qt 4 era: u16 big-endian size of what follows, then the `qt` bytes'
text\t'RFC 865: UTF-8 text, lines ending in CRLF'"
complete -c fortune-server -l fortunes -d 'Fortune file (fortune-mod\'s `%` lines with its strfile index NAME.dat if any, or one fortune per line) or directory (every file with a NAME.dat, e.g. /usr/share/games/fortunes); repeatable. A leading `-` makes a PATH optional: left out while missing or without fortune files. `N% PATH` (fortune\'s `N% PATH`) gives PATH N percent of the picks; paths without one share the rest; together at most 100. Default (or nothing left): the built-in seven' -r
complete -c fortune-server -l short-max -d 'The longest fortune counted as short, in bytes as strfile(1) counts them: its lines with their newlines (fortune\'s -n)' -r
complete -c fortune-server -l cache-dir -d 'Directory for the cache of the fortune directories\' lists, read and written by one-connection processes (Accept=yes, --inetd) so each need not list them again. Default: systemd\'s CacheDirectory= ($CACHE_DIRECTORY), else none' -r -F
complete -c fortune-server -l max-entry -d 'Longest fortune served, in bytes of UTF-8: longer entries are left out, with one warning per file at load. Each connection in flight holds at most twice this' -r
complete -c fortune-server -l timeout -d 'Seconds any one wait may take: writing to a client, waiting for it to close, stopping' -r
complete -c fortune-server -l idle-exit -d 'Exit (status 0) after this many seconds with no client: none being served, none lingering, none served. For socket activation: systemd keeps the socket and starts the service again for the next client. Default: never' -r
complete -c fortune-server -l max-connections -d 'Connections being written at once, across all sockets (a worker thread each while its client is slow to read); more wait in the kernel\'s backlog. Clients whose fortune is written and who have yet to close do not count' -r
complete -c fortune-server -l max-per-source -d 'Connections (and descriptors) one source may hold at once, being served or waiting for the client to close; a source is a /24 (IPv4) or a /48 (IPv6). More are closed at once, without a fortune. Of them, at most 1/8 of --max-connections may be slow readers being written; more are reset. 0: no cap, no share (e.g. behind a NAT; behind a load balancer see --proxy-from). Default: 1/8 of the descriptor limit' -r
complete -c fortune-server -l proxy-from -d 'Load balancers (ADDR/BITS, or an address; comma-separated): their TCP connections must begin with a PROXY protocol header (v2, or v1 text), and are served as the client it names: per-source caps, logs and PEER= see that client. A missing or malformed header (or none within --timeout) closes the connection. Other peers are served as themselves, whatever they send. Health checks (LOCAL) are served without a source. UDP is not proxied' -r
complete -c fortune-server -l udp-rate -d 'UDP replies a second per source (a /24 for IPv4, a /48 for IPv6), after a burst of --udp-burst; all sources together get at most 4096 times this, sources seen asking in the last 1 to 2 s first; more datagrams go unanswered. 0: no limit' -r
complete -c fortune-server -l udp-burst -d 'UDP replies one source may get at once before --udp-rate applies' -r
complete -c fortune-server -l log-level -d 'Log level: off, error, warn, info, debug or trace' -r -f -a "off\t''
error\t''
warn\t''
info\t''
debug\t''
trace\t''"
complete -c fortune-server -l hand-over -d 'Hold the TCP addresses of socket unit UNIT while systemd restarts it, so none of its connections is refused or reset (docs/admin.md, "Changing the socket"); then exit. Run by the units\' ExecStopPre= through systemd-run, as root; no variable sets it' -r
complete -c fortune-server -l equal -d 'Each file (each member of a directory) equally likely, then an entry in it, whatever their sizes; percentages apply first (fortune\'s -e). Default: each entry equally likely'
complete -c fortune-server -l short -d 'Serve only short fortunes, of at most --short-max bytes (fortune\'s -s)'
complete -c fortune-server -l long -d 'Serve only long fortunes, of more than --short-max bytes (fortune\'s -l)'
complete -c fortune-server -l offensive -d 'Also serve offensive collections (rot13 index, off/ directory), decoded'
complete -c fortune-server -l daily -d 'The same fortune all day for everyone (from the date in the local time zone). Qt\'s Fortune Client asks again at once when a fortune repeats: it reconnects in a loop'
complete -c fortune-server -l inetd -d 'Serve the connection on standard input (inetd, or systemd\'s StandardInput=socket)'
complete -c fortune-server -s h -l help -d 'Print help (see more with \'--help\')'
complete -c fortune-server -s V -l version -d 'Print version'
