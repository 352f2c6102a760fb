// AGP 9 compiles Kotlin itself (built-in Kotlin); this pins its Kotlin
// compiler to the catalog's version, the one the Compose compiler plugin
// must match (and the kotlinc that compiles the shared logic in CI).
buildscript {
    repositories {
        mavenCentral()
    }
    dependencies {
        classpath(libs.kotlin.gradle.plugin)
    }
}

plugins {
    alias(libs.plugins.android.application) apply false
    alias(libs.plugins.android.library) apply false
    alias(libs.plugins.kotlin.compose) apply false
}
