// styleclip/models/tokenizer.h — CLIP's byte-level BPE tokenizer, id-for-id with OpenAI's
// `clip/simple_tokenizer.py` (SimpleTokenizer) for the same merges file.
//
// Design note
// - What it does: text → cleaned text → pre-tokens (the reference's regex) → UTF-8 bytes mapped to
//   "byte-unicode" symbols → greedy lowest-rank BPE merging → vocabulary ids; `tokenize` adds the
//   start/end tokens and pads/truncates to CLIP's context length; `decode` inverts `encode` up to
//   cleaning and word boundaries.
// - Cleaning differs from the reference in one step. The reference runs `ftfy.fix_text` first,
// which
//   has no C++ counterpart; we apply Unicode NFC normalisation instead (ftfy also normalises to
//   NFC, so text that ftfy leaves alone tokenizes identically). Not reproduced: mojibake repair,
//   curly quotes → straight quotes, ligature expansion ("ﬁ" → "fi"), full-width → half-width forms,
//   removal of control/terminal-escape characters, line-break normalisation. Everything after ftfy
//   matches the reference: `html.unescape` twice (numeric references with Python's replacement
//   rules and all 2231 HTML5 named references), `str.strip`, `\s+` → " ", `str.strip`,
//   `str.lower` (ICU root-locale full case mapping, which includes final sigma and "İ" → "i̇").
// - Character classes (letters, numbers, White_Space, case mappings) come from ICU: Unicode 15.0
//   with Debian 12's ICU 72. A character assigned in a later Unicode version may be split
//   differently than by a newer Python `regex` module; everything assigned by Unicode 15.0 matches.
// - Input is UTF-8 bytes; ill-formed UTF-8 is rejected with an `input_error`, never guessed at.
// - Threading: all public methods are const and safe to call concurrently. Encoded words are cached
//   (as the reference does) in a mutex-guarded map with a size cap.
// - Ownership: the tokenizer owns its tables (a few MB for OpenAI's vocabulary); it is movable, not
//   copyable. Using a moved-from tokenizer is undefined.
// - Dependencies: ICU (uc: normalisation, case mapping; i18n: regex) and zlib, private to the .cpp.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace styleclip {

/// CLIP's BPE tokenizer (`clip/simple_tokenizer.py`). Vocabulary layout, as in the reference: the
/// 256 byte-unicode symbols, the same 256 with "</w>" appended, one token per merge ("a b" → "ab"),
/// then "<|startoftext|>" and "<|endoftext|>". A token's id is its index.
class Tokenizer {
 public:
  /// Reads OpenAI's merges file (gzip text: header line, then "a b" merge lines). Uses the first
  /// `max_merges` merges (OpenAI's code uses 49152-256-2 = 48894); fewer if the file has fewer.
  /// Throws `bundle_error` naming the file when it is missing, unreadable, not gzip, truncated,
  /// empty, has no merges, is not UTF-8, or has a line that is not two byte-unicode symbols.
  /// Throws `std::invalid_argument` when `max_merges` < 1.
  explicit Tokenizer(const std::filesystem::path& merges_gz, int max_merges = 48894);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  /// The result of `tokenize`: exactly `context_length` ids.
  struct Tokens {
    std::vector<int64_t> ids;  ///< [SOT] + bpe + [EOT], zero-padded; or cut (see `truncated`).
    bool truncated = false;    ///< The text did not fit; ids were cut and the last set to EOT.
  };

  /// BPE ids of `text` (UTF-8) without start/end tokens; the reference's `encode`. The literal
  /// strings "<|startoftext|>" and "<|endoftext|>" in the text map to the special ids, as there.
  /// Throws `input_error` when `text` is not valid UTF-8.
  [[nodiscard]] std::vector<int64_t> encode(std::string_view text) const;

  /// [SOT] + encode(text) + [EOT], zero-padded to `context_length` (CLIP: 77). When longer, cut to
  /// `context_length` with the last id replaced by EOT and `truncated` set (the reference's
  /// `clip.tokenize(..., truncate=True)`). Throws `input_error` for invalid UTF-8 and
  /// `std::invalid_argument` when `context_length` < 2.
  [[nodiscard]] Tokens tokenize(std::string_view text, int context_length = 77) const;

  /// The reference's `decode`: token strings concatenated, mapped back to bytes, decoded as UTF-8
  /// with U+FFFD for each ill-formed subsequence, and every "</w>" replaced by a space (so words
  /// end with a space). Throws `input_error` for an id outside [0, vocab_size()).
  [[nodiscard]] std::string decode(const std::vector<int64_t>& ids) const;

  /// The vocabulary entry for `id` in its byte-unicode form, e.g. "hair</w>" or "Ġ" (for debugging
  /// and the `tokenize` subcommand). Throws `input_error` for an id outside [0, vocab_size()).
  [[nodiscard]] std::string token_string(int64_t id) const;

  /// 256 + 256 + merges + 2 (49408 for OpenAI's file).
  [[nodiscard]] int64_t vocab_size() const;
  /// Id of "<|startoftext|>": vocab_size() - 2 (49406 for OpenAI's file).
  [[nodiscard]] int64_t start_token() const;
  /// Id of "<|endoftext|>": vocab_size() - 1 (49407 for OpenAI's file).
  [[nodiscard]] int64_t end_token() const;

  /// The cleaning that `encode` applies before pre-tokenisation, as UTF-8: NFC (standing in for
  /// ftfy), html.unescape twice, strip, whitespace runs → one space, strip, lower-case. Exposed so
  /// that callers can show what was tokenized. Throws `input_error` for invalid UTF-8.
  [[nodiscard]] static std::string clean_text(std::string_view text);

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace styleclip
