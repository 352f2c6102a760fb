//! Renders the model's own Jinja chat template (the `chat_template` of
//! `tokenizer_config.json`) the way HF transformers' `apply_chat_template`
//! does, with minijinja instead of Python's jinja2.

use std::path::Path;

use minijinja::{context, AutoEscape, Environment, ErrorKind};

use crate::error::{Error, Result};

/// Name under which the single template is stored in its environment.
const TEMPLATE_NAME: &str = "chat_template";

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

/// One turn of a conversation, serialized for the template as
/// `{"role": "user", "content": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: Role,
    pub content: String,
}

impl ChatMessage {
    pub fn system(content: impl Into<String>) -> Self {
        Self::new(Role::System, content)
    }

    pub fn user(content: impl Into<String>) -> Self {
        Self::new(Role::User, content)
    }

    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new(Role::Assistant, content)
    }

    fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// A compiled chat template. Cloning shares the compiled template.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl ChatTemplate {
    /// Reads the `chat_template` of a `tokenizer_config.json`. Like HF, a list
    /// of named templates is accepted and the one named `default` is used.
    pub fn from_tokenizer_config(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let config: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::malformed(path, e.to_string()))?;
        let source = match &config["chat_template"] {
            serde_json::Value::String(source) => source,
            serde_json::Value::Array(named) => named
                .iter()
                .find(|entry| entry["name"] == "default")
                .and_then(|entry| entry["template"].as_str())
                .ok_or_else(|| {
                    Error::malformed(path, "`chat_template` list has no `default` template")
                })?,
            serde_json::Value::Null => {
                return Err(Error::malformed(path, "no `chat_template` in the file"))
            }
            _ => return Err(Error::malformed(path, "`chat_template` is not a string")),
        };
        Self::compile(source.to_owned())
            .map_err(|e| Error::malformed(path, format!("`chat_template`: {e}")))
    }

    /// Compiles template text (as embedded in model files).
    pub fn from_source(source: &str) -> Result<Self> {
        Self::compile(source.to_owned()).map_err(|e| Error::ChatTemplate(e.to_string()))
    }

    fn compile(source: String) -> std::result::Result<Self, minijinja::Error> {
        let mut env = Environment::new();
        // transformers compiles chat templates in an ImmutableSandboxedEnvironment
        // with trim_blocks and lstrip_blocks; jinja2's other defaults (no
        // autoescape, trailing newline of the source dropped, lenient
        // undefined) are minijinja's too, set here to make that explicit.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        // Python string/dict methods (`.startswith`, `.split`, `.strip`...).
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(TEMPLATE_NAME, source.clone())?;
        Ok(Self { env, source })
    }

    /// The template text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages` like `apply_chat_template(messages, tokenize=False,
    /// add_generation_prompt=..., enable_thinking=...)`. `tools` and
    /// `documents` are passed as none, as HF does when none are given.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        enable_thinking: bool,
    ) -> Result<String> {
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::ChatTemplate(e.to_string()))?;
        template
            .render(context! {
                messages => messages,
                tools => (),
                documents => (),
                add_generation_prompt => add_generation_prompt,
                enable_thinking => enable_thinking,
            })
            .map_err(|e| Error::ChatTemplate(e.to_string()))
    }
}

/// `raise_exception(message)`: how HF templates reject a conversation (e.g.
/// roles out of order). Rendering fails with the template's message.
fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
    }

    fn qwen3() -> ChatTemplate {
        ChatTemplate::from_tokenizer_config(
            &fixtures().join("qwen3-tokenizer/tokenizer_config.json"),
        )
        .expect("fixture template compiles")
    }

    fn render(messages: &[ChatMessage], add_generation_prompt: bool, thinking: bool) -> String {
        qwen3()
            .render(messages, add_generation_prompt, thinking)
            .expect("renders")
    }

    /// Writes `contents` to a fresh temporary file and returns its path.
    fn temp_file(name: &str, contents: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("tah-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("temp file writable");
        path
    }

    #[test]
    fn template_is_shareable() {
        fn assert_traits<T: Clone + Send + Sync>() {}
        assert_traits::<ChatTemplate>();
    }

    #[test]
    fn fixture_prompts_match_reference() {
        let template = qwen3();
        for dir in ["tiny-d2-a", "tiny-d3-a"] {
            let path = fixtures().join(dir).join("expected.json");
            let text = std::fs::read_to_string(path).expect("expected.json readable");
            let expected: Value = serde_json::from_str(&text).expect("expected.json parses");
            for case in expected["cases"].as_array().expect("cases") {
                let user = ChatMessage::user(case["text"].as_str().expect("text"));
                let prompt = template.render(&[user], true, true).unwrap();
                assert_eq!(prompt, case["prompt"].as_str().expect("prompt"));
            }
        }
    }

    #[test]
    fn disabled_thinking_appends_an_empty_think_block() {
        assert_eq!(
            render(&[ChatMessage::user("Hi")], true, false),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        );
    }

    #[test]
    fn system_message_comes_first() {
        let messages = [
            ChatMessage::system("You are terse."),
            ChatMessage::user("Hi"),
        ];
        assert_eq!(
            render(&messages, true, true),
            "<|im_start|>system\nYou are terse.<|im_end|>\n\
             <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn earlier_turns_lose_their_thinking() {
        let messages = [
            ChatMessage::system("You are terse."),
            ChatMessage::user("What is 2+2?"),
            ChatMessage::assistant("<think>\nadd them\n</think>\n\n4"),
            ChatMessage::user("And 3+3?"),
        ];
        assert_eq!(
            render(&messages, true, true),
            "<|im_start|>system\nYou are terse.<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n\
             <|im_start|>assistant\n4<|im_end|>\n\
             <|im_start|>user\nAnd 3+3?<|im_end|>\n\
             <|im_start|>assistant\n"
        );
    }

    #[test]
    fn final_assistant_turn_keeps_its_thinking() {
        let with_thinking = [
            ChatMessage::user("Hi"),
            ChatMessage::assistant("<think>\nhmm\n</think>\n\nHello"),
        ];
        assert_eq!(
            render(&with_thinking, false, true),
            "<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n<think>\nhmm\n</think>\n\nHello<|im_end|>\n"
        );
        // The last assistant turn always gets a think block, empty if need be.
        let without = [ChatMessage::user("Hi"), ChatMessage::assistant("Hello")];
        assert_eq!(
            render(&without, false, true),
            "<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n"
        );
    }

    #[test]
    fn source_round_trips() {
        let template = qwen3();
        let copy = ChatTemplate::from_source(template.source()).unwrap();
        assert_eq!(copy.source(), template.source());
        let messages = [ChatMessage::user("½ × 12 = 6 ✓")];
        assert_eq!(
            copy.render(&messages, true, true).unwrap(),
            template.render(&messages, true, true).unwrap()
        );
    }

    #[test]
    fn messages_serialize_with_lowercase_roles() {
        let json = serde_json::to_string(&ChatMessage::assistant("ok")).unwrap();
        assert_eq!(json, r#"{"role":"assistant","content":"ok"}"#);
    }

    #[test]
    fn raise_exception_fails_the_render() {
        let template = ChatTemplate::from_source(
            "{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}",
        )
        .unwrap();
        let err = template
            .render(&[ChatMessage::user("Hi")], true, true)
            .unwrap_err();
        assert!(
            matches!(&err, Error::ChatTemplate(message) if message.contains("system first")),
            "{err}"
        );
        assert!(template
            .render(&[ChatMessage::system("s")], true, true)
            .is_ok());
    }

    #[test]
    fn bad_templates_and_configs_are_errors() {
        assert!(matches!(
            ChatTemplate::from_source("{% if %}"),
            Err(Error::ChatTemplate(_))
        ));
        let no_template = temp_file("no-template.json", r#"{"eos_token": "<|im_end|>"}"#);
        let result = ChatTemplate::from_tokenizer_config(&no_template);
        std::fs::remove_file(&no_template).unwrap();
        assert!(matches!(result, Err(Error::MalformedFile { .. })));

        let not_json = temp_file("not-json.json", "{");
        let result = ChatTemplate::from_tokenizer_config(&not_json);
        std::fs::remove_file(&not_json).unwrap();
        assert!(matches!(result, Err(Error::MalformedFile { .. })));

        let missing = fixtures().join("no-such-dir/tokenizer_config.json");
        assert!(matches!(
            ChatTemplate::from_tokenizer_config(&missing),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn named_template_list_uses_default() {
        let config = r#"{"chat_template": [
            {"name": "tool_use", "template": "tools"},
            {"name": "default", "template": "{{ messages[0].content }}"}
        ]}"#;
        let path = temp_file("named.json", config);
        let result = ChatTemplate::from_tokenizer_config(&path);
        std::fs::remove_file(&path).unwrap();
        let template = result.unwrap();
        assert_eq!(
            template
                .render(&[ChatMessage::user("x")], false, true)
                .unwrap(),
            "x"
        );
    }
}
