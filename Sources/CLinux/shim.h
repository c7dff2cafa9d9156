// Linux interfaces that Swift's Glibc module does not expose: epoll.
#include <sys/epoll.h>
