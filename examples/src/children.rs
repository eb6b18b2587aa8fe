//! Sub-orchestrations: a parent fans out over child orchestrations, one
//! per region, each of which fans out over its region's stores; the parent
//! adds up what the children return. Each child is an instance of its own,
//! with its own history, so the parent's history holds one entry per region,
//! not one per store.

use durable::{activity, orchestrator, Context};
use serde::{Deserialize, Serialize};

/// The (simulated) sales ledger: each region's stores and their sales, in
/// cents.
const LEDGER: &[(&str, &[(&str, u64)])] = &[
    ("north", &[("oslo", 1_200), ("bergen", 800)]),
    ("south", &[("rome", 1_500), ("naples", 700), ("bari", 300)]),
    ("west", &[("lisbon", 900)]),
];

/// The sales report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Each region's sales in cents, in the order asked.
    pub by_region: Vec<(String, u64)>,
    /// All of them.
    pub total: u64,
}

/// A region the ledger does not know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownRegion {
    /// The region asked for.
    pub region: String,
}

impl std::fmt::Display for UnknownRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no region called `{}`", self.region)
    }
}

impl std::error::Error for UnknownRegion {}

/// Lists a region's stores.
#[activity]
pub async fn list_stores(region: String) -> Result<Vec<String>, UnknownRegion> {
    println!("  activity: list the stores of {region}");
    let (_, stores) = LEDGER
        .iter()
        .find(|(name, _)| *name == region)
        .ok_or(UnknownRegion { region })?;
    Ok(stores
        .iter()
        .map(|(store, _)| (*store).to_owned())
        .collect())
}

/// Reads one store's sales.
#[activity]
pub async fn store_sales(store: String) -> u64 {
    let sales = LEDGER
        .iter()
        .flat_map(|(_, stores)| stores.iter())
        .find(|(name, _)| *name == store)
        .map_or(0, |(_, sales)| *sales);
    println!("  activity: {store} sold {sales}");
    sales
}

/// The child: one region's sales, summed over its stores.
#[orchestrator]
pub async fn region_sales(ctx: Context, region: String) -> Result<u64, String> {
    let stores = ctx
        .call(list_stores, region)
        .await
        .map_err(|e| e.to_string())?;
    let sales = durable::join_all(stores.into_iter().map(|s| ctx.call(store_sales, s))).await;
    sales
        .into_iter()
        .map(|s| s.map_err(|e| e.to_string()))
        .sum()
}

/// The parent: one child per region, all at once, their sales added up.
/// The first region that has no total ends the report with its reason.
#[orchestrator]
pub async fn sales_report(ctx: Context, regions: Vec<String>) -> Result<Report, String> {
    let children = regions
        .iter()
        .map(|region| ctx.call_child(region_sales, region.clone()));
    let mut by_region = Vec::with_capacity(regions.len());
    for (region, result) in regions.iter().zip(durable::join_all(children).await) {
        // The outer `Err` is a `ChildError` (the child failed or was
        // terminated); the inner one is the child's own `Err`, as returned.
        let sales = result.map_err(|e| e.to_string())??;
        by_region.push((region.clone(), sales));
    }
    let total = by_region.iter().map(|(_, sales)| sales).sum();
    Ok(Report { by_region, total })
}

/// Registers the workflow's orchestrators and activities.
pub fn register(builder: durable::Builder) -> durable::Builder {
    builder
        .activity(list_stores)
        .activity(store_sales)
        .orchestrator(region_sales)
        .orchestrator(sales_report)
}
