public enum FakeBackendPlaceholder {}
