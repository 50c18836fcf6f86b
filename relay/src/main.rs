fn main() { println!("bm-relay: not built yet"); }
