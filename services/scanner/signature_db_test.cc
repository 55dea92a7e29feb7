#include "services/scanner/signature_db.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sdk/base/status_matchers.h"
#include "sdk/base/unique_fd.h"

namespace capbroker::scanner {
namespace {

using ::testing::HasSubstr;

// A database holding `text`, as the broker grants it: a file fd at offset 0
// (ReadRegularFile reads with pread, so the write's offset does not matter).
UniqueFd Database(absl::string_view text) {
  UniqueFd db(memfd_create("db", MFD_CLOEXEC));
  EXPECT_TRUE(db.valid());
  EXPECT_EQ(write(db.get(), text.data(), text.size()), static_cast<ssize_t>(text.size()));
  return db;
}

TEST(SignatureDbTest, LoadsTheShippedDatabase) {
  UniqueFd fd(open("services/scanner/signatures.txt", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  ASSERT_OK_AND_ASSIGN(std::vector<Signature> signatures, LoadSignatures(fd.get()));
  ASSERT_EQ(signatures.size(), 1u);
  EXPECT_EQ(signatures[0].name, "Eicar-Test-Signature");
  EXPECT_EQ(signatures[0].bytes.size(), 68u);
  EXPECT_EQ(signatures[0].bytes.substr(0, 4), "X5O!");
}

TEST(SignatureDbTest, SkipsCommentsBlanksAndSurroundingSpace) {
  ASSERT_OK_AND_ASSIGN(std::vector<Signature> signatures,
                       ParseSignatures("# c\n\n  \t\n  a.b_c-1:DEADbeef  \r\n# x:zz\nb:00000000"));
  ASSERT_EQ(signatures.size(), 2u);
  EXPECT_EQ(signatures[0].name, "a.b_c-1");
  EXPECT_EQ(signatures[0].bytes, std::string("\xde\xad\xbe\xef"));
  EXPECT_EQ(signatures[1].bytes, std::string(4, '\0'));
}

TEST(SignatureDbTest, ErrorsNameLineAndColumn) {
  auto error = [](absl::string_view text) { return ParseSignatures(text).status(); };
  EXPECT_THAT(error("a:00000000\n  b c:00000000"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2:4: ' ' is not allowed")));
  EXPECT_THAT(error("abc"), StatusIs(absl::StatusCode::kInvalidArgument,
                                     HasSubstr("1:4: expected ':'")));
  EXPECT_THAT(error(":00000000"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("1:1: empty signature name")));
  EXPECT_THAT(error("a:0000x000"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("1:7: 'x' is not a hex digit")));
  EXPECT_THAT(error("a:000000000"), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("1:11: odd number")));
  EXPECT_THAT(error("a:000000"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("1:3: a signature has 4 to 1024 bytes")));
  EXPECT_THAT(error("a:00000000\na:11111111"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2:1: signature 'a' is "
                                                                     "defined twice")));
  EXPECT_THAT(error(std::string(65, 'n') + ":00000000"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 64")));
  EXPECT_THAT(error("a:" + std::string(2050, '0')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("this one has 1025")));
}

TEST(SignatureDbTest, RefusesANonRegularDatabase) {
  UniqueFd dir(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_THAT(LoadSignatures(dir.get()),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("a directory")));
}

// The grant's name is the policy's (`--grant=sigdb`): messages use it, so
// that an administrator finds the capability they are about.
TEST(SignatureDbTest, MessagesNameTheGrantInUse) {
  UniqueFd dir(open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  EXPECT_THAT(LoadSignatures(dir.get(), "sigdb"),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("sigdb: a directory, not a regular file")));
  UniqueFd db = Database("a:0000x000\n");
  EXPECT_THAT(LoadSignatures(db.get(), "sigdb"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("sigdb:1:7: 'x' is not a hex digit")));
  EXPECT_THAT(LoadSignatures(db.get()),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("signatures:1:7:")));
}

// Fail closed: a database with no signature would make the scanner answer
// `clean` for every file, EICAR included, so it is refused and the service
// never says it is ready.
TEST(SignatureDbTest, RefusesADatabaseWithoutSignatures) {
  for (absl::string_view text : {"", "# only a comment\n\n  \t\n# another\n"}) {
    UniqueFd db = Database(text);
    EXPECT_THAT(LoadSignatures(db.get(), "sigdb"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("sigdb: no signatures (every file would be reported clean)")))
        << "database: '" << absl::CHexEscape(text) << "'";
  }
}

}  // namespace
}  // namespace capbroker::scanner
