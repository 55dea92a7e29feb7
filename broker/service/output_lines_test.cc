#include "broker/service/output_lines.h"

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/log_limiter.h"

namespace capbroker::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

bool AllowAll(uint64_t& suppressed) {
  suppressed = 0;
  return true;
}

std::vector<std::string> Texts(const std::vector<OutputLine>& lines) {
  std::vector<std::string> texts;
  for (const OutputLine& line : lines) texts.push_back(line.text);
  return texts;
}

TEST(OutputLinesTest, JoinsPiecesIntoLines) {
  OutputLines lines;
  EXPECT_THAT(lines.Add("hel", AllowAll), IsEmpty());
  EXPECT_THAT(Texts(lines.Add("lo\nwor", AllowAll)), ElementsAre("hello"));
  EXPECT_THAT(Texts(lines.Add("ld\n\n", AllowAll)), ElementsAre("world", ""));
  EXPECT_THAT(lines.Add("tail", AllowAll), IsEmpty());
  OutputEnd end = lines.Finish(0);
  EXPECT_EQ(end.rest, "tail");
  EXPECT_EQ(end.suppressed, 0u);
  EXPECT_FALSE(lines.Finish(0).rest.has_value());
}

TEST(OutputLinesTest, ControlCharactersCannotForgeLines) {
  OutputLines lines;
  EXPECT_THAT(Texts(lines.Add("a\rcapbrokerd: fake\x1b[2J\tb\n", AllowAll)),
              ElementsAre("a\\x0dcapbrokerd: fake\\x1b[2J\\x09b"));
}

// C1 controls are two bytes in UTF-8: CSI (U+009B) "1A" moves a terminal's
// cursor up a line, over the broker's line before, as ESC [ 1A does. They
// are escaped, as are invalid UTF-8 bytes; text in other languages stays
// readable. Also in the unterminated rest, and across batches.
TEST(OutputLinesTest, C1ControlsCannotReachTheTerminal) {
  OutputLines lines;
  std::vector<std::string> texts = Texts(lines.Add(
      "a\xc2\x9b" "1Acapbrokerd: fake \xc3\xa9t\xc3\xa9 \xff\n", AllowAll));
  ASSERT_EQ(texts.size(), 1u);
  EXPECT_EQ(texts[0].find('\x9b'), std::string::npos) << texts[0];
  EXPECT_EQ(texts[0], "a\\xc2\\x9b1Acapbrokerd: fake \xc3\xa9t\xc3\xa9 \\xff");
  // A character split between two reads is whole again in its line.
  EXPECT_THAT(lines.Add("\xc3", AllowAll), IsEmpty());
  EXPECT_THAT(Texts(lines.Add("\xa9\xc2\x85\n", AllowAll)),
              ElementsAre("\xc3\xa9\\xc2\\x85"));
  EXPECT_THAT(lines.Add("\xc2\x9b" "2J", AllowAll), IsEmpty());
  EXPECT_EQ(lines.Finish(0).rest, "\\xc2\\x9b2J");
}

// The cut is made on what the service wrote, escaping afterwards: a line
// of 4096 bytes that are all escaped is one line (of 4 x 4096), not four.
TEST(OutputLinesTest, TheCutCountsTheServicesBytes) {
  OutputLines lines;
  std::vector<OutputLine> out =
      lines.Add(std::string(kMaxLineBytes, '\x1b') + "\n", AllowAll);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].text.size(), 4 * kMaxLineBytes);
}

TEST(OutputLinesTest, LongLinesAreCut) {
  OutputLines lines;
  std::string big(kMaxLineBytes * 2 + 10, 'x');
  std::vector<OutputLine> out = lines.Add(big + "\n", AllowAll);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].text.size(), kMaxLineBytes);
  EXPECT_EQ(out[1].text.size(), kMaxLineBytes);
  EXPECT_EQ(out[2].text.size(), 10u);
}

// The budget of one second, asked at one moment per batch as the service
// host does (it reads the clock once per wakeup).
struct Budget {
  explicit Budget(int lines_per_second) : limiter(lines_per_second) {}

  std::vector<OutputLine> Add(OutputLines& lines, absl::string_view bytes, absl::Time now) {
    return lines.Add(bytes, [&](uint64_t& suppressed) {
      ++asked;
      return limiter.Allow(now, suppressed);
    });
  }

  LogLimiter limiter;
  int asked = 0;
};

TEST(OutputLinesTest, AFloodOnceTheBudgetIsSpentIsCountedWithoutAskingPerLine) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  OutputLines lines;
  Budget budget(2);
  EXPECT_THAT(Texts(budget.Add(lines, "a\nb\nc\n", t0)), ElementsAre("a", "b"));

  // What a service writing 64 KiB of newlines in a loop gives one wakeup:
  // one question to the budget, not 65536 (and no line built).
  budget.asked = 0;
  EXPECT_THAT(budget.Add(lines, std::string(64 * 1024, '\n'), t0), IsEmpty());
  EXPECT_EQ(budget.asked, 1);

  // Exactly counted: "c", then the 65536 empty lines.
  std::vector<OutputLine> next = budget.Add(lines, "next\n", t0 + absl::Seconds(1));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].text, "next");
  EXPECT_EQ(next[0].suppressed_before, 1u + 64 * 1024);
}

TEST(OutputLinesTest, SuppressedLongLinesAndTailsAreCountedAndKept) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  OutputLines lines;
  Budget budget(1);
  // "a" is logged, "b" refused; then a line of three and a bit pieces, and
  // an unterminated tail of one piece and "yyy": 1 + 4 + 1 suppressed.
  std::string batch = "a\nb\n" + std::string(3 * kMaxLineBytes + 5, 'x') + "\n" +
                      std::string(kMaxLineBytes, 'y') + "yyy";
  EXPECT_THAT(Texts(budget.Add(lines, batch, t0)), ElementsAre("a"));
  EXPECT_EQ(budget.asked, 2);
  // The tail goes on in the next second, and is logged whole.
  std::vector<OutputLine> next = budget.Add(lines, "z\x01\n", t0 + absl::Seconds(1));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].text, "yyyz\\x01");
  EXPECT_EQ(next[0].suppressed_before, 6u);
}

// A flood that no line follows: its count, refusals of the budget and
// lines counted without asking it together, comes at the end of the
// stream, before the unterminated rest; once.
TEST(OutputLinesTest, TheCountOfAFloodThatEndsTheStreamIsGivenAtTheEnd) {
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  OutputLines lines;
  Budget budget(2);
  EXPECT_THAT(Texts(budget.Add(lines, "a\nb\nc\nd\ne\ntail", t0)), ElementsAre("a", "b"));
  OutputEnd end = lines.Finish(budget.limiter.TakeSuppressed());
  EXPECT_EQ(end.suppressed, 3u);
  EXPECT_EQ(end.rest, "tail");
  // The stream starts afresh: nothing is carried over to its next line.
  end = lines.Finish(budget.limiter.TakeSuppressed());
  EXPECT_EQ(end.suppressed, 0u);
  EXPECT_FALSE(end.rest.has_value());
  std::vector<OutputLine> next = budget.Add(lines, "next\n", t0 + absl::Seconds(1));
  ASSERT_EQ(next.size(), 1u);
  EXPECT_EQ(next[0].suppressed_before, 0u);
}

// The rationed lines are those of the plain rule (a line at each '\n' and
// at every kMaxLineBytes, each asked of the budget), whatever the input and
// however it is cut into batches: a comparison over generated input.
struct Reference {
  std::vector<OutputLine> Add(absl::string_view bytes, absl::Time now) {
    std::vector<OutputLine> out;
    auto complete = [&] {
      uint64_t suppressed = 0;
      if (limiter.Allow(now, suppressed)) {
        out.push_back({absl::StrReplaceAll(partial, {{"\x01", "\\x01"}}), suppressed});
      }
      partial.clear();
    };
    for (char c : bytes) {
      if (c == '\n') {
        complete();
        continue;
      }
      if (partial.size() == kMaxLineBytes) complete();
      partial.push_back(c);
    }
    return out;
  }

  LogLimiter limiter{3};
  std::string partial;
};

TEST(OutputLinesTest, RationedLinesAreThoseOfThePlainRule) {
  std::mt19937 random(12345);  // fixed: the same input every run
  for (int round = 0; round < 50; ++round) {
    std::string input;
    while (input.size() < 200 * 1024) {
      switch (random() % 4) {
        case 0:
          input.append(random() % 50, '\n');
          break;
        case 1:
          input.append(random() % (3 * kMaxLineBytes), 'x');
          break;
        case 2:
          input.append(kMaxLineBytes - 1 + random() % 3, 'y');
          break;
        default:
          input.append(1, '\x01');
          break;
      }
    }
    OutputLines lines;
    Budget budget(3);
    Reference reference;
    size_t at = 0;
    for (int batch = 0; at < input.size(); ++batch) {
      size_t size = std::min<size_t>(1 + random() % (20 * 1024), input.size() - at);
      absl::string_view bytes = absl::string_view(input).substr(at, size);
      at += size;
      // Two batches a second, so a spent budget also spans batches.
      absl::Time now = absl::FromUnixSeconds(batch / 2);
      std::vector<OutputLine> got = budget.Add(lines, bytes, now);
      std::vector<OutputLine> want = reference.Add(bytes, now);
      ASSERT_EQ(got.size(), want.size()) << "round " << round << " batch " << batch;
      for (size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].text, want[i].text) << "round " << round << " batch " << batch;
        ASSERT_EQ(got[i].suppressed_before, want[i].suppressed_before)
            << "round " << round << " batch " << batch << " line " << i;
      }
    }
    // At the end, the lines suppressed since the last one allowed: the
    // plain rule's refusals not yet reported.
    OutputEnd end = lines.Finish(budget.limiter.TakeSuppressed());
    EXPECT_EQ(end.rest.value_or(""), reference.partial) << "round " << round;
    EXPECT_EQ(end.suppressed, reference.limiter.TakeSuppressed()) << "round " << round;
  }
}

}  // namespace
}  // namespace capbroker::service
