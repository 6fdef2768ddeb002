int main() { return 1; }  // replaced by the perigee-data tool
