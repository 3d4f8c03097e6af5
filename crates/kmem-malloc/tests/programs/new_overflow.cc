// operator new[] goes through malloc: overflow a new char[32] by 8 bytes.
#include <cstdio>

int main() {
    char *p = new char[32];
    volatile char *v = p;
    for (int i = 0; i < 40; i++) v[i] = 'x';
    delete[] p;
    std::printf("program finished\n");
    return 0;
}
