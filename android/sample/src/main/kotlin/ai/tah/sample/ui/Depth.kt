package ai.tah.sample.ui

import ai.tah.app.TokenSpan
import androidx.compose.ui.graphics.Color
import androidx.compose.ui.text.AnnotatedString
import androidx.compose.ui.text.SpanStyle
import androidx.compose.ui.text.buildAnnotatedString
import androidx.compose.ui.text.withStyle

/** The background of a token that took [depth] passes: none for easy tokens, warmer the deeper. */
fun depthColor(depth: Int): Color = when {
    depth <= 1 -> Color.Transparent
    depth == 2 -> Color(0xFFFFE082)
    else -> Color(0xFFFFAB40)
}

/** The spans as text, hard tokens tinted by their depth. */
fun tinted(spans: List<TokenSpan>): AnnotatedString = buildAnnotatedString {
    for (span in spans) {
        withStyle(SpanStyle(background = depthColor(span.depth))) { append(span.text) }
    }
}
