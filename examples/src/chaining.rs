//! Function chaining: a blog post is published in three steps, each
//! activity's output the next one's input (load the draft, render it to
//! HTML, publish the page). The first step that fails ends the chain.

use durable::{activity, orchestrator, Context};
use serde::{Deserialize, Serialize};

/// A post as its author left it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draft {
    /// The title.
    pub title: String,
    /// The text; paragraphs are separated by blank lines.
    pub body: String,
}

/// A published post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// Where it can be read.
    pub url: String,
    /// The page as rendered.
    pub html: String,
}

/// No draft has the slug asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoSuchDraft {
    /// The slug asked for.
    pub slug: String,
}

impl std::fmt::Display for NoSuchDraft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no draft called `{}`", self.slug)
    }
}

impl std::error::Error for NoSuchDraft {}

/// Loads a draft from the (simulated) drafts folder: `hello-world` is the
/// only one there.
#[activity]
pub async fn load_draft(slug: String) -> Result<Draft, NoSuchDraft> {
    println!("  activity: load draft {slug}");
    match slug.as_str() {
        "hello-world" => Ok(Draft {
            title: "Hello, world".to_owned(),
            body: "A first post.\n\nIt survived a restart.".to_owned(),
        }),
        _ => Err(NoSuchDraft { slug }),
    }
}

/// Renders a draft to HTML: the title as a heading, each paragraph in `<p>`.
#[activity]
pub async fn render(draft: Draft) -> String {
    println!("  activity: render \"{}\"", draft.title);
    let mut html = format!("<h1>{}</h1>", escape(&draft.title));
    for paragraph in draft.body.split("\n\n") {
        html.push_str(&format!("<p>{}</p>", escape(paragraph.trim())));
    }
    html
}

/// Publishes a rendered page (simulated); returns its URL.
#[activity]
pub async fn publish(slug: String, html: String) -> String {
    println!("  activity: publish {slug} ({} bytes)", html.len());
    format!("https://blog.example/{slug}")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chain: load, render, publish. An `Err` names the step's failure;
/// the steps after it never run.
#[orchestrator]
pub async fn publish_post(ctx: Context, slug: String) -> Result<Published, String> {
    let draft = ctx
        .call(load_draft, slug.clone())
        .await
        .map_err(|e| e.to_string())?;
    let html = ctx.call(render, draft).await.map_err(|e| e.to_string())?;
    let url = ctx
        .call(publish, (slug, html.clone()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Published { url, html })
}

/// Registers the workflow's orchestrator and activities.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder
        .activity(load_draft)
        .activity(render)
        .activity(publish)
        .orchestrator(publish_post)
}
