// A statically linked program (no dynamic loader, no shared libraries): the
// sandbox must run it from outside the system directories, where the only
// thing mounted for it is the file itself.
#include <unistd.h>

int main() {
  const char text[] = "static hello\n";
  return write(1, text, sizeof text - 1) == sizeof text - 1 ? 0 : 1;
}
