/* The Accept=yes reference of bench/compare: the least a per-connection
 * program can do. Started by `systemd-socket-activate --accept`, it writes
 * one fixed fortune, framed as QDataStream << QString (u32 BE byte count,
 * then UTF-16BE), to the connection on fd 3 and exits. Built with
 * `gcc -O2 -static`: no dynamic loader, no libc start-up beyond the minimum. */
#include <unistd.h>

int main(void)
{
    static const char text[] = "You might have mail.";
    unsigned char frame[4 + 2 * (sizeof text - 1)];
    unsigned n = 2 * (sizeof text - 1);
    frame[0] = n >> 24;
    frame[1] = n >> 16;
    frame[2] = n >> 8;
    frame[3] = n;
    for (unsigned i = 0; i < sizeof text - 1; i++) {
        frame[4 + 2 * i] = 0;
        frame[5 + 2 * i] = (unsigned char)text[i];
    }
    return write(3, frame, sizeof frame) == (ssize_t)sizeof frame ? 0 : 1;
}
