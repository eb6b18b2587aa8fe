//! Sub-orchestrations: a parent sums its children's results, each child an
//! instance of its own, and a child's own error reaches the parent as
//! returned, on a real SQLite file.

mod common;

use common::{builder, PATIENCE};
use durable::RuntimeStatus;
use durable_examples::children::{self, region_sales, sales_report, Report};

fn regions(names: &[&str]) -> Vec<String> {
    names.iter().map(|&n| n.to_owned()).collect()
}

#[tokio::test]
async fn the_parent_adds_up_its_children() {
    let (_dir, builder) = builder();
    let rt = children::register(builder).start().await.unwrap();
    let client = rt.client();
    let h = client
        .start(sales_report, regions(&["north", "south", "west"]))
        .await
        .unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Ok(Report {
            by_region: vec![
                ("north".to_owned(), 2_000),
                ("south".to_owned(), 2_500),
                ("west".to_owned(), 900),
            ],
            total: 5_400,
        })
    );
    // Each child is an instance of its own, under "{parent}:{seq}".
    let south = format!("{}:1", h.id());
    let status = client.status(&south).await.unwrap();
    assert_eq!(
        (status.name.as_str(), status.runtime_status),
        ("region_sales", RuntimeStatus::Completed)
    );
    assert_eq!(
        client
            .handle(region_sales, south)
            .result_timeout(PATIENCE)
            .await
            .unwrap(),
        Ok(2_500)
    );
    rt.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_childs_error_reaches_the_parent() {
    let (_dir, builder) = builder();
    let rt = children::register(builder).start().await.unwrap();
    let h = rt
        .client()
        .start(sales_report, regions(&["north", "atlantis"]))
        .await
        .unwrap();
    assert_eq!(
        h.result_timeout(PATIENCE).await.unwrap(),
        Err("no region called `atlantis`".to_owned())
    );
    rt.shutdown().await.unwrap();
}
