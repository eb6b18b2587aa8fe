use durable::entity;

#[derive(Default)]
struct Counter {
    n: u64,
}

#[entity]
impl Counter {
    fn add(&mut self, by: u64) {
        self.n += by;
    }
}

fn main() {}
