/* hello: a WASI command. Reads its input on stdin and prints "hello, <input>!" on stdout
 * (trailing newlines of the input trimmed; empty input greets "world"). One line goes to
 * stderr, which ends up in the function's log. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    size_t cap = 256, n = 0;
    char *buf = malloc(cap);
    if (!buf) return 1;
    for (;;) {
        if (n == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) return 1;
            buf = bigger;
        }
        size_t got = fread(buf + n, 1, cap - n, stdin);
        if (got == 0) break;
        n += got;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
    fprintf(stderr, "hello: greeting %zu bytes of input\n", n);
    if (n == 0) {
        printf("hello, world!\n");
    } else {
        printf("hello, %.*s!\n", (int)n, buf);
    }
    free(buf);
    return 0;
}
