fn main() {
    println!("homehub {}", env!("CARGO_PKG_VERSION"));
}
