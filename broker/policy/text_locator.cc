#include "broker/policy/text_locator.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "broker/policy/excerpt.h"

namespace capbroker {
namespace {

bool IsWhitespace(char c) {
  return c == ' ' || c == '\f' || c == '\n' || c == '\r' || c == '\t' ||
         c == '\v';
}
bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }
bool IsOctal(char c) { return c >= '0' && c <= '7'; }
bool IsDigit(char c) { return absl::ascii_isdigit(c); }
// The characters Cap'n Proto's lexer glues into one operator token. Lexing
// them the same way keeps `uid =-1` an error here, as it is in TextCodec.
bool IsOperatorChar(char c) {
  return c != '\0' && absl::string_view("!$%&*+-./:<=>?@^|~").find(c) !=
                          absl::string_view::npos;
}
// After a number, Cap'n Proto requires that no letter, '_' or '.' follows.
bool EndsNumber(char c) { return !(absl::ascii_isalpha(c) || c == '_' || c == '.'); }

int DigitValue(char c) {
  if (IsDigit(c)) return c - '0';
  return absl::ascii_tolower(c) - 'a' + 10;
}

enum class TokenType {
  kEnd,
  kLParen,
  kRParen,
  kLBracket,
  kRBracket,
  kComma,
  kOperator,
  kString,
  kInteger,
  kFloat,
  kIdentifier,
};

struct Token {
  TokenType type = TokenType::kEnd;
  size_t begin = 0;
  size_t end = 0;
};

}  // namespace

// Tokenizer and recursive-descent parser in one: the grammar is small and
// the parser needs one token of lookahead.
class TextLocator::Parser {
 public:
  explicit Parser(TextLocator& out) : out_(out), text_(out.text_) {}

  void Run() {
    // TextCodec reads a C string: a NUL anywhere (even in a comment) would
    // hide the rest of the text from it but not from this parser.
    if (size_t nul = text_.find('\0'); nul != absl::string_view::npos) {
      Fail(nul, "NUL byte in the text; a policy is plain text");
      return;
    }
    Token first = Next();
    if (failed()) return;
    if (first.type == TokenType::kEnd) {
      Fail(0, "the text is empty; expected one struct value: "
              "( field = value, ... )");
      return;
    }
    if (first.type != TokenType::kLParen) {
      Fail(first.begin,
           absl::StrCat("expected '(' to open the top-level struct, found ",
                        Describe(first)));
      return;
    }
    ParseValue(first, -1, "", 0, 0, 0);
    if (failed()) return;
    Token extra = Next();
    if (failed()) return;
    if (extra.type != TokenType::kEnd) {
      Fail(extra.begin,
           absl::StrCat("unexpected ", Describe(extra),
                        " after the end of the top-level struct"));
    }
  }

 private:
  bool failed() const { return out_.syntax_error_.has_value(); }

  void Fail(size_t offset, std::string message) {
    if (!failed()) out_.syntax_error_ = TextSyntaxError{offset, std::move(message)};
  }

  std::string Describe(const Token& token) const {
    switch (token.type) {
      case TokenType::kEnd:
        return "the end of the text";
      case TokenType::kString:
        return absl::StrCat("the string ",
                            Quoted(text_.substr(token.begin, token.end - token.begin)));
      default:
        return Quoted(text_.substr(token.begin, token.end - token.begin));
    }
  }

  // ---- Tokenizer ----

  char At(size_t i) const { return i < text_.size() ? text_[i] : '\0'; }

  void SkipSpaceAndComments() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (IsWhitespace(c)) {
        ++pos_;
      } else if (c == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  // Returns the next token, or a kEnd token after calling Fail().
  Token Next() {
    if (has_peeked_) {
      has_peeked_ = false;
      return peeked_;
    }
    SkipSpaceAndComments();
    Token token;
    token.begin = pos_;
    if (pos_ >= text_.size()) {
      token.end = pos_;
      return token;
    }
    char c = text_[pos_];
    switch (c) {
      case '(': token.type = TokenType::kLParen; ++pos_; break;
      case ')': token.type = TokenType::kRParen; ++pos_; break;
      case '[': token.type = TokenType::kLBracket; ++pos_; break;
      case ']': token.type = TokenType::kRBracket; ++pos_; break;
      case ',': token.type = TokenType::kComma; ++pos_; break;
      case '"': token.type = TokenType::kString; LexString(); break;
      default:
        if (IsNameStart(c)) {
          token.type = TokenType::kIdentifier;
          while (IsNameChar(At(pos_))) ++pos_;
        } else if (IsDigit(c)) {
          token.type = LexNumber();
        } else if (IsOperatorChar(c)) {
          token.type = TokenType::kOperator;
          while (IsOperatorChar(At(pos_))) ++pos_;
        } else {
          Fail(pos_, absl::StrCat("unexpected character ",
                                  Quoted(text_.substr(pos_, 1))));
        }
    }
    token.end = pos_;
    if (failed()) return Token{TokenType::kEnd, token.begin, token.begin};
    return token;
  }

  Token Peek() {
    if (!has_peeked_) {
      peeked_ = Next();
      has_peeked_ = true;
    }
    return peeked_;
  }

  // Consumes a double-quoted string with Cap'n Proto's (C's) escapes.
  void LexString() {
    size_t open = pos_++;
    while (true) {
      if (pos_ >= text_.size()) {
        Fail(open, "string is not closed: missing '\"'");
        return;
      }
      char c = text_[pos_];
      if (c == '"') {
        ++pos_;
        return;
      }
      if (c == '\n') {
        Fail(open, "string is not closed before the end of the line; "
                   "write a newline inside a string as \\n");
        return;
      }
      if (c != '\\') {
        ++pos_;
        continue;
      }
      size_t escape = pos_++;
      char e = At(pos_);
      if (e != '\0' && absl::string_view("abfnrtv'\"\\?").find(e) !=
                           absl::string_view::npos) {
        ++pos_;
      } else if (e == 'x' && absl::ascii_isxdigit(At(pos_ + 1)) &&
                 absl::ascii_isxdigit(At(pos_ + 2))) {
        pos_ += 3;
      } else if (IsOctal(e)) {
        for (int i = 0; i < 3 && IsOctal(At(pos_)); ++i) ++pos_;
      } else {
        Fail(escape, absl::StrCat(
                         "invalid escape ", Quoted(text_.substr(escape, 2)),
                         " in a string; valid escapes: \\\\ \\\" \\n \\t \\r "
                         "\\a \\b \\f \\v \\' \\? \\xHH (two hex digits) "
                         "\\ooo (octal)"));
        return;
      }
    }
  }

  // Consumes an integer or float the way kj::parse::integer and
  // kj::parse::number do, but rejects what TextCodec would misread: integers
  // that overflow 64 bits (TextCodec wraps them), a leading 0 followed by 8
  // or 9, and exponents without digits.
  TokenType LexNumber() {
    size_t start = pos_;
    auto fail_malformed = [&](absl::string_view why) {
      size_t end = pos_;
      while (IsNameChar(At(end)) || At(end) == '.') ++end;
      Fail(start, absl::StrCat("malformed number ",
                               Quoted(text_.substr(start, end - start)), ": ", why));
      return TokenType::kEnd;
    };
    auto accumulate = [&](size_t begin, size_t end, int base) {
      uint64_t value = 0;
      constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
      for (size_t i = begin; i < end; ++i) {
        uint64_t digit = DigitValue(text_[i]);
        if (value > (kMax - digit) / base) return false;
        value = value * base + digit;
      }
      return true;
    };

    if (At(pos_) == '0' && At(pos_ + 1) == 'x') {
      pos_ += 2;
      size_t digits = pos_;
      while (absl::ascii_isxdigit(At(pos_))) ++pos_;
      if (pos_ == digits || !EndsNumber(At(pos_))) {
        return fail_malformed("a hex number is 0x followed by 0-9, a-f");
      }
      if (!accumulate(digits, pos_, 16)) {
        return fail_malformed("does not fit in 64 bits");
      }
      return TokenType::kInteger;
    }

    // Integer: 0[0-7]* (octal) or [1-9][0-9]* (decimal).
    size_t int_end = pos_ + 1;
    bool octal = At(pos_) == '0';
    while (octal ? IsOctal(At(int_end)) : IsDigit(At(int_end))) ++int_end;
    if (EndsNumber(At(int_end))) {
      pos_ = int_end;
      if (IsDigit(At(pos_))) {
        // Only reachable for octal: 8 or 9 after a leading 0.
        while (IsDigit(At(pos_))) ++pos_;
        return fail_malformed(
            "a leading 0 makes a number octal (digits 0-7); "
            "write decimal numbers without the leading 0");
      }
      if (!accumulate(start + (octal ? 1 : 0), pos_, octal ? 8 : 10)) {
        return fail_malformed("does not fit in 64 bits");
      }
      return TokenType::kInteger;
    }

    // Float: digits [. digits*] [e [+-] digits+].
    while (IsDigit(At(pos_))) ++pos_;
    if (At(pos_) == '.') {
      ++pos_;
      while (IsDigit(At(pos_))) ++pos_;
    }
    if (At(pos_) == 'e' || At(pos_) == 'E') {
      ++pos_;
      if (At(pos_) == '+' || At(pos_) == '-') ++pos_;
      if (!IsDigit(At(pos_))) return fail_malformed("exponent without digits");
      while (IsDigit(At(pos_))) ++pos_;
    }
    if (!EndsNumber(At(pos_))) {
      return fail_malformed("a letter, '_' or '.' follows the number");
    }
    return TokenType::kFloat;
  }

  // ---- Parser ----

  // A value the tree does not hold: one after value_past_limit().
  static constexpr size_t kNotBuilt = std::numeric_limits<size_t>::max();

  // The parent to give the values inside `node`: -1 when it is not built,
  // as for the root's, so that they count towards no node's entries.
  static int AsParent(size_t node) {
    return node == kNotBuilt ? -1 : static_cast<int>(node);
  }

  // Counts a value in `parent`'s entries and adds it to the tree, unless
  // the tree already holds the value past its limit: kNotBuilt then.
  size_t AddNode(TextValueKind kind, size_t begin, int parent,
                 absl::string_view field, size_t field_offset) {
    if (parent >= 0) ++out_.nodes_[parent].entries;
    if (out_.value_past_limit() != nullptr) return kNotBuilt;
    TextNode node;
    node.kind = kind;
    node.begin = begin;
    node.end = begin;
    node.field = field;
    node.field_offset = field_offset;
    node.parent = parent;
    size_t index = out_.nodes_.size();
    if (parent >= 0) {
      TextNode& p = out_.nodes_[parent];
      node.index_in_parent = p.children.size();
      p.children.push_back(index);
    }
    out_.nodes_.push_back(std::move(node));
    return index;
  }

  void SetEnd(size_t node, size_t end) {
    if (node != kNotBuilt) out_.nodes_[node].end = end;
  }

  // Parses the value that starts with `first`, as a child of `parent`.
  void ParseValue(const Token& first, int parent, absl::string_view field,
                  size_t field_offset, int depth, size_t context_offset) {
    switch (first.type) {
      case TokenType::kLParen:
      case TokenType::kLBracket: {
        if (depth >= kMaxTextNesting) {
          Fail(first.begin, absl::StrCat("nesting deeper than ",
                                         kMaxTextNesting, " levels"));
          return;
        }
        bool is_struct = first.type == TokenType::kLParen;
        size_t node = AddNode(is_struct ? TextValueKind::kStruct : TextValueKind::kList,
                              first.begin, parent, field, field_offset);
        if (is_struct) {
          ParseStructBody(node, first.begin, depth + 1);
        } else {
          ParseListBody(node, first.begin, depth + 1);
        }
        return;
      }
      case TokenType::kString: {
        size_t node = AddNode(TextValueKind::kString, first.begin, parent,
                              field, field_offset);
        size_t end = first.end;
        while (Peek().type == TokenType::kString) end = Next().end;
        SetEnd(node, end);
        return;
      }
      case TokenType::kInteger:
      case TokenType::kFloat:
      case TokenType::kIdentifier: {
        TextValueKind kind = first.type == TokenType::kInteger ? TextValueKind::kInteger
                             : first.type == TokenType::kFloat ? TextValueKind::kFloat
                                                               : TextValueKind::kIdentifier;
        size_t node = AddNode(kind, first.begin, parent, field, field_offset);
        SetEnd(node, first.end);
        return;
      }
      case TokenType::kOperator: {
        absl::string_view op = text_.substr(first.begin, first.end - first.begin);
        if (op == "-") {
          Token number = Next();
          if (failed()) return;
          if (number.type == TokenType::kInteger || number.type == TokenType::kFloat) {
            size_t node = AddNode(number.type == TokenType::kInteger
                                      ? TextValueKind::kInteger
                                      : TextValueKind::kFloat,
                                  first.begin, parent, field, field_offset);
            SetEnd(node, number.end);
            return;
          }
          Fail(first.begin, absl::StrCat("'-' must be followed by a number, found ",
                                         Describe(number)));
          return;
        }
        Fail(first.begin, absl::StrCat("unexpected ", Describe(first),
                                       "; expected a value"));
        return;
      }
      default:
        Fail(first.type == TokenType::kEnd ? context_offset : first.begin,
             absl::StrCat("expected a value, found ", Describe(first)));
        return;
    }
  }

  // After '(' (at `open`): [ name = value { , name = value } [,] ] ')'
  void ParseStructBody(size_t node, size_t open, int depth) {
    while (!failed()) {
      Token name = Next();
      if (failed()) return;
      if (name.type == TokenType::kRParen) {
        SetEnd(node, name.end);
        return;
      }
      if (name.type != TokenType::kIdentifier) {
        Fail(name.type == TokenType::kEnd ? open : name.begin,
             name.type == TokenType::kEnd
                 ? std::string("'(' is never closed: missing ')'")
                 : absl::StrCat("expected a field name or ')', found ",
                                Describe(name)));
        return;
      }
      absl::string_view field = text_.substr(name.begin, name.end - name.begin);
      Token equals = Next();
      if (failed()) return;
      if (equals.type != TokenType::kOperator ||
          text_.substr(equals.begin, equals.end - equals.begin) != "=") {
        Fail(equals.type == TokenType::kEnd ? name.end : equals.begin,
             absl::StrCat("expected '=' after field name ", Quoted(field), ", found ",
                          Describe(equals),
                          equals.type == TokenType::kOperator
                              ? " (put spaces around '=')"
                              : ""));
        return;
      }
      Token value = Next();
      if (failed()) return;
      ParseValue(value, AsParent(node), field, name.begin, depth,
                 equals.end);
      if (failed()) return;
      Token after = Next();
      if (failed()) return;
      if (after.type == TokenType::kRParen) {
        SetEnd(node, after.end);
        return;
      }
      if (after.type != TokenType::kComma) {
        Fail(after.type == TokenType::kEnd ? open : after.begin,
             after.type == TokenType::kEnd
                 ? std::string("'(' is never closed: missing ')'")
                 : absl::StrCat("expected ',' or ')' after the value of ", Quoted(field),
                                ", found ", Describe(after)));
        return;
      }
    }
  }

  // After '[' (at `open`): [ value { , value } [,] ] ']'
  void ParseListBody(size_t node, size_t open, int depth) {
    while (!failed()) {
      Token value = Next();
      if (failed()) return;
      if (value.type == TokenType::kRBracket) {
        SetEnd(node, value.end);
        return;
      }
      if (value.type == TokenType::kEnd) {
        Fail(open, "'[' is never closed: missing ']'");
        return;
      }
      if (value.type == TokenType::kComma) {
        Fail(value.begin, "empty list element: remove the extra ','");
        return;
      }
      ParseValue(value, AsParent(node), "", 0, depth, value.begin);
      if (failed()) return;
      Token after = Next();
      if (failed()) return;
      if (after.type == TokenType::kRBracket) {
        SetEnd(node, after.end);
        return;
      }
      if (after.type != TokenType::kComma) {
        Fail(after.type == TokenType::kEnd ? open : after.begin,
             after.type == TokenType::kEnd
                 ? std::string("'[' is never closed: missing ']'")
                 : absl::StrCat("expected ',' or ']' after a list element, found ",
                                Describe(after)));
        return;
      }
    }
  }

  TextLocator& out_;
  absl::string_view text_;
  size_t pos_ = 0;
  bool has_peeked_ = false;
  Token peeked_;
};

TextLocator TextLocator::Parse(absl::string_view text, size_t max_values) {
  TextLocator locator(text, max_values);
  locator.line_starts_.push_back(0);
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n') locator.line_starts_.push_back(i + 1);
  }
  Parser(locator).Run();
  return locator;
}

absl::string_view TextLocator::SourceOf(const TextNode& node) const {
  return text_.substr(node.begin, node.end - node.begin);
}

const TextNode* TextLocator::NodeAt(size_t offset) const {
  const TextNode* node = root();
  if (node == nullptr || offset < node->begin || offset >= node->end) {
    return nullptr;
  }
  while (true) {
    const TextNode* inner = nullptr;
    for (size_t child : node->children) {
      const TextNode& c = nodes_[child];
      size_t start = c.field.empty() ? c.begin : c.field_offset;
      if (start <= offset && offset < c.end) {
        inner = &c;
        break;
      }
    }
    if (inner == nullptr) return node;
    node = inner;
  }
}

std::string TextLocator::PathOf(const TextNode& node) const {
  std::vector<const TextNode*> chain;
  for (const TextNode* n = &node; n->parent >= 0; n = &nodes_[n->parent]) {
    chain.push_back(n);
  }
  std::string path;
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
    const TextNode& n = **it;
    if (nodes_[n.parent].kind == TextValueKind::kList) {
      absl::StrAppend(&path, "[", n.index_in_parent, "]");
    } else {
      absl::StrAppend(&path, path.empty() ? "" : ".", n.field);
    }
  }
  return path;
}

std::string TextLocator::PathAt(size_t offset) const {
  const TextNode* node = NodeAt(offset);
  return node == nullptr ? std::string() : PathOf(*node);
}

std::optional<std::vector<PathStep>> SplitPath(absl::string_view path) {
  std::vector<PathStep> steps;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '[') {
      size_t close = path.find(']', i);
      size_t index = 0;
      if (close == absl::string_view::npos ||
          !absl::SimpleAtoi(path.substr(i + 1, close - i - 1), &index)) {
        return std::nullopt;
      }
      steps.push_back(PathStep{"", index});
      i = close + 1;
      continue;
    }
    if (path[i] == '.') {
      if (steps.empty()) return std::nullopt;
      ++i;
    }
    size_t end = path.find_first_of(".[", i);
    if (end == absl::string_view::npos) end = path.size();
    if (end == i) return std::nullopt;
    steps.push_back(PathStep{std::string(path.substr(i, end - i)), std::nullopt});
    i = end;
  }
  return steps;
}

namespace {

// The deepest node reached along a path and whether the whole path was.
struct PathWalk {
  const TextNode* node;
  bool complete;
};

PathWalk WalkPath(const std::vector<TextNode>& nodes, absl::string_view path) {
  std::optional<std::vector<PathStep>> steps = SplitPath(path);
  if (nodes.empty() || !steps.has_value()) return {nullptr, false};
  const TextNode* node = &nodes[0];
  for (const PathStep& step : *steps) {
    const TextNode* next = nullptr;
    if (step.index.has_value()) {
      if (node->kind == TextValueKind::kList && *step.index < node->children.size()) {
        next = &nodes[node->children[*step.index]];
      }
    } else if (node->kind == TextValueKind::kStruct) {
      for (size_t child : node->children) {
        if (nodes[child].field == step.field) next = &nodes[child];  // last wins
      }
    }
    if (next == nullptr) return {node, false};
    node = next;
  }
  return {node, true};
}

}  // namespace

const TextNode* TextLocator::Find(absl::string_view path) const {
  paths_walked_.Add();
  PathWalk walk = WalkPath(nodes_, path);
  return walk.complete ? walk.node : nullptr;
}

size_t TextLocator::OffsetOf(absl::string_view path) const {
  paths_walked_.Add();
  PathWalk walk = WalkPath(nodes_, path);
  return walk.node == nullptr ? 0 : walk.node->begin;
}

LineColumn TextLocator::LineColumnAt(size_t offset) const {
  offset = std::min(offset, text_.size());
  auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
  size_t line = it - line_starts_.begin();  // >= 1: line_starts_[0] == 0
  size_t column = 1;
  for (size_t i = line_starts_[line - 1]; i < offset; ++i) {
    // Count UTF-8 lead bytes only, so a multi-byte character is one column.
    if ((static_cast<unsigned char>(text_[i]) & 0xC0) != 0x80) ++column;
  }
  return {line, column};
}

size_t TextLocator::LineStart(size_t line) const {
  if (line == 0) return 0;
  if (line > line_starts_.size()) return text_.size();
  return line_starts_[line - 1];
}

}  // namespace capbroker
