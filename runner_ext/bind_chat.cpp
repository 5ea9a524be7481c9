#include <pybind11/stl.h>

#include "bindings.h"
#include "chat_tools.h"
#include "errors.h"
#include "model.h"
#include "sampler.h"

namespace mullama::bind {

void register_chat(py::module_ & m) {
    py::class_<ChatPrompt>(m, "ChatPrompt", "A chat rendered with tools: the prompt, its tool-call grammar and parser.")
        .def_readonly("prompt", &ChatPrompt::prompt)
        .def_readonly("grammar", &ChatPrompt::grammar)
        .def_readonly("grammar_lazy", &ChatPrompt::grammar_lazy)
        .def_readonly("triggers", &ChatPrompt::triggers)
        .def_readonly("preserved_tokens", &ChatPrompt::preserved_tokens)
        .def_readonly("additional_stops", &ChatPrompt::additional_stops)
        .def_readonly("format", &ChatPrompt::format)
        .def_readonly("generation_prompt", &ChatPrompt::generation_prompt)
        .def_readonly("supports_thinking", &ChatPrompt::supports_thinking)
        .def_readonly("thinking_start_tag", &ChatPrompt::thinking_start_tag)
        .def_readonly("thinking_end_tags", &ChatPrompt::thinking_end_tags);

    py::class_<ChatToolCall>(m, "ChatToolCall")
        .def_readonly("name", &ChatToolCall::name)
        .def_readonly("arguments", &ChatToolCall::arguments)
        .def_readonly("id", &ChatToolCall::id);
    py::class_<ChatResult>(m, "ChatResult")
        .def_readonly("content", &ChatResult::content)
        .def_readonly("reasoning_content", &ChatResult::reasoning_content)
        .def_readonly("tool_calls", &ChatResult::tool_calls);
    py::class_<ChatDelta>(m, "ChatDelta")
        .def_readonly("content", &ChatDelta::content)
        .def_readonly("reasoning_content", &ChatDelta::reasoning_content)
        .def_readonly("tool_index", &ChatDelta::tool_index)
        .def_readonly("name", &ChatDelta::name)
        .def_readonly("arguments", &ChatDelta::arguments);

    py::class_<ChatParser>(m, "ChatParser", "Reads generated text back into content, reasoning and tool calls.")
        .def(py::init<const ChatPrompt &>(), py::arg("prompt"))
        .def("feed", &ChatParser::feed, py::arg("text"), py::arg("final") = false,
             py::call_guard<py::gil_scoped_release>(),
             "Parse all the text generated so far; the changes since the last call.")
        .def("append", &ChatParser::append, py::arg("piece"), py::arg("final") = false,
             py::call_guard<py::gil_scoped_release>(),
             "feed() with the text kept in the parser: `piece` is the text generated since the last call.")
        .def("result", &ChatParser::result);

    m.def("apply_chat",
          [](const Model & model, std::string messages_json, std::string tools_json, std::string tool_choice,
             bool parallel_tool_calls, bool add_generation_prompt, std::string reasoning_format, bool enable_thinking) {
              ChatInput in{std::move(messages_json), std::move(tools_json),      std::move(tool_choice),
                           parallel_tool_calls,      add_generation_prompt,     std::move(reasoning_format),
                           enable_thinking};
              py::gil_scoped_release nogil;
              return apply_chat(model, in);
          },
          py::arg("model"), py::arg("messages_json"), py::arg("tools_json") = "", py::arg("tool_choice") = "auto",
          py::arg("parallel_tool_calls") = false, py::arg("add_generation_prompt") = true,
          py::arg("reasoning_format") = "none", py::arg("enable_thinking") = true,
          "Render OpenAI messages and tools with the model's template (llama.cpp common/chat).");

    m.def("chat_caps", &chat_caps, py::arg("model"), py::call_guard<py::gil_scoped_release>(),
          "What the model's chat template can render: supports_tools, supports_tool_calls, ...");

    m.def("with_chat",
          [](const SamplingParams & base, const ChatPrompt & chat) {
              SamplingParams p = base;
              if (!chat.grammar.empty()) {
                  if (!p.grammar.empty() || !p.json_schema.empty()) {
                      raise(ErrorKind::InvalidArgument, "a grammar or JSON schema cannot be combined with tools");
                  }
                  p.grammar = chat.grammar;
                  p.tool_calls = true;
                  p.grammar_lazy = chat.grammar_lazy;
                  p.grammar_triggers = chat.triggers;
              }
              p.preserved_tokens = chat.preserved_tokens;
              p.generation_prompt = chat.generation_prompt;
              if (!chat.thinking_end_tags.empty()) {
                  p.reasoning_start = chat.thinking_start_tag;
                  p.reasoning_end = chat.thinking_end_tags;
              }
              return p;
          },
          py::arg("sampling"), py::arg("chat"), "Sampling parameters with the chat prompt's tool-call grammar.");
}

}  // namespace mullama::bind
