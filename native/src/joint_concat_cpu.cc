// JointConcat on the CPU: y is a sequence of batch entries, each a's entry then b's; a range of y's
// bytes is copied piece by piece with memcpy.
#include <cstring>

#include "joint_concat.h"

namespace atelier {

void joint_concat_cpu(const JointConcatArgs& args, int64_t begin, int64_t end) {
  const int64_t a_row = args.a_row_bytes();
  const int64_t b_row = args.b_row_bytes();
  const int64_t y_row = a_row + b_row;
  const char* a = static_cast<const char*>(args.a);
  const char* b = static_cast<const char*>(args.b);
  char* y = static_cast<char*>(args.y);
  while (begin < end) {
    const int64_t batch = begin / y_row;
    const int64_t within = begin - batch * y_row;
    // The piece of a's or b's entry that `begin` falls in, up to its end or `end`.
    const bool from_a = within < a_row;
    const char* source = from_a ? a + batch * a_row + within : b + batch * b_row + (within - a_row);
    const int64_t piece_end = batch * y_row + (from_a ? a_row : y_row);
    const int64_t length = (piece_end < end ? piece_end : end) - begin;
    std::memcpy(y + begin, source, static_cast<size_t>(length));
    begin += length;
  }
}

}  // namespace atelier
