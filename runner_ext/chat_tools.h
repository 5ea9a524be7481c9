// Chat with tools through llama.cpp's common/chat (what llama-server does with --jinja): the model's
// own template renders messages and tool definitions; each family's tool-call format yields a
// grammar (lazy, with triggers, where the format allows free text before a call) and a parser that
// turns generated text back into content, reasoning and tool calls, partial text included.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model.h"

struct common_chat_parser_params;
struct common_chat_msg;

namespace mullama {

struct ChatInput {
    std::string messages_json;        // OpenAI chat messages (tool_calls, tool results included)
    std::string tools_json;           // OpenAI tools array; "" or "[]": none
    std::string tool_choice = "auto"; // auto | none | required
    bool parallel_tool_calls = false;
    bool add_generation_prompt = true;
    std::string reasoning_format = "none";  // none | auto | deepseek | deepseek-legacy (llama-server's names)
    bool enable_thinking = true;      // the template's switch for models that can think or not
};

struct ChatPrompt {
    std::string prompt;
    std::string grammar;              // GBNF for the tool calls ("" without tools)
    bool grammar_lazy = false;        // constrain only from a trigger on
    std::vector<std::pair<int32_t, std::string>> triggers;  // (common_grammar_trigger_type, value)
    std::vector<std::string> preserved_tokens;
    std::vector<std::string> additional_stops;
    std::string format;               // the tool-call format's name ("Generic", "Hermes 2 Pro", ...)
    int32_t format_id = 0;            // common_chat_format, for the parser
    std::string generation_prompt;
    std::string parser;               // the serialized PEG parser for the output
    bool supports_thinking = false;   // the template reasons (thinking tags): the parser splits it out
    int32_t reasoning_format = 0;     // common_reasoning_format, for the parser
    bool reasoning_in_content = false;  // deepseek-legacy: reasoning also stays in the content
    std::string thinking_start_tag;   // e.g. "<think>" (for the reasoning-budget sampler)
    std::vector<std::string> thinking_end_tags;
};

// The template can render and the parser split reasoning ("thinking").
bool chat_supports_thinking(const Model & model);

// Throws TemplateError (the template failed) or InvalidArgument (malformed messages or tools).
ChatPrompt apply_chat(const Model & model, const ChatInput & input);

// What the model's template can render (supports_tools, supports_tool_calls, supports_system_role, ...).
std::map<std::string, bool> chat_caps(const Model & model);

struct ChatToolCall {
    std::string name;
    std::string arguments;            // JSON text
    std::string id;
};

struct ChatResult {
    std::string content;
    std::string reasoning_content;
    std::vector<ChatToolCall> tool_calls;
};

// What changed since the previous parse, in the order OpenAI streams it: reasoning, content, then
// per tool call its name (first delta of that index) and argument fragments.
struct ChatDelta {
    std::string content;
    std::string reasoning_content;
    int32_t tool_index = -1;          // >= 0: a tool-call delta
    std::string name;
    std::string arguments;
    std::string id;
};

class ChatParser {
public:
    explicit ChatParser(const ChatPrompt & prompt);
    ~ChatParser();
    ChatParser(const ChatParser &) = delete;
    ChatParser & operator=(const ChatParser &) = delete;

    // Parse the whole text generated so far (partial until `final`); the changes since the last call.
    // A final text the parser cannot read is returned whole as content.
    std::vector<ChatDelta> feed(const std::string & text, bool final);
    // feed() with the text kept here: `piece` is what was generated since the last call.
    std::vector<ChatDelta> append(const std::string & piece, bool final);
    ChatResult result() const;

private:
    std::string text_;
    std::unique_ptr<common_chat_parser_params> params_;
    std::unique_ptr<common_chat_msg> last_;
};

}  // namespace mullama
