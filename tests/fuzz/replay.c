/*
 * replay.c - run every file of one or more corpus directories through a
 * libFuzzer harness, without libFuzzer: `make test` uses it so that CI
 * replays the checked-in corpora (under the sanitizers in the sanitize
 * build). Real fuzzing: `make fuzz` builds the harnesses with clang.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long n;

    if (!f) {
        perror(path);
        return -1;
    }
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t) n : 1);
    if (!buf || (n > 0 && fread(buf, 1, (size_t) n, f) != (size_t) n)) {
        fprintf(stderr, "%s: read failed\n", path);
        fclose(f);
        free(buf);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t) n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int i, count = 0;

    for (i = 1; i < argc; i++) {
        DIR *d = opendir(argv[i]);
        struct dirent *de;

        if (!d) {
            if (replay_file(argv[i]))
                return 1;
            count++;
            continue;
        }
        while ((de = readdir(d)) != NULL) {
            char path[4096];
            if (de->d_name[0] == '.')
                continue;
            snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
            if (replay_file(path)) {
                closedir(d);
                return 1;
            }
            count++;
        }
        closedir(d);
    }
    printf("fuzz-replay: %s: %d inputs ok\n", argc > 1 ? argv[1] : "(none)", count);
    return 0;
}
